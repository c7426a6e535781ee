"""What the studies on altered copies of a rendered EMOPIA set share (scripts/level_robustness.py: quieter copies;
scripts/rate_robustness.py: copies at lower sampling rates): their arguments, the evaluation of one copy, and the
results file and README table they write."""

import argparse
import json
from pathlib import Path

from .checkpoints import DEFAULT_MODEL_DIR, load_model_or_exit
from .emopia import DEFAULT_DATA_DIR, load_emopia, split_of_audio_set
from .evaluation import clip_predictions, replace_section, write_report

STUDY_METRICS = ("accuracy", "arousal_accuracy", "valence_accuracy", "macro_f1")


def study_parser(description: str, name: str) -> argparse.ArgumentParser:
    """A parser with the arguments every study takes; `name` (e.g. "level_robustness") names its results file."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--data", default=str(DEFAULT_DATA_DIR), help="folder holding emopia/ (default: %(default)s)")
    parser.add_argument("--cache-dir", required=True, help="holds audio/<set> and the caches")
    parser.add_argument("--audio-set", default="test-new-piano")
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--output", help=f"default: results/{name}-<audio-set>.json")
    parser.add_argument("--no-readme", action="store_true", help="do not write README's table")
    return parser


def study_setup(args, parser):
    """The split of `--audio-set`, its folder of audio, and the model and processor, in evaluation mode."""
    try:
        split = split_of_audio_set(args.audio_set)
    except ValueError as error:
        parser.error(str(error))
    source = Path(args.cache_dir) / "audio" / args.audio_set
    if not source.is_dir():
        raise FileNotFoundError(f"{source} does not exist: render it first (scripts/render_emopia.py --sets {args.audio_set}).")
    model, processor = load_model_or_exit(args.model)
    model.eval()
    return split, source, model, processor


def evaluate_copy(args, model, processor, split: str, folder: Path, set_name: str, report_dir: Path):
    """The split's clips in `folder` (a `datasets.Dataset`; clips left out are counted on screen), the model's
    predictions on them (cached mode, cached as `set_name`) and their metrics, with a report in `report_dir`."""
    splits, report = load_emopia(Path(args.data) / "emopia", audio_dir=folder, splits=[split], return_report=True)
    if report.left_out(split):
        print(f"{set_name}: left out {len(report.left_out(split))} clips (see load_emopia's report)")
    dataset = splits[split]
    predictions = clip_predictions(model, processor, dataset, Path(args.cache_dir), set_name, num_proc=args.num_proc)
    metrics = write_report(predictions, dataset, report_dir, f"{Path(args.model).name} on {report_dir.name}")
    return dataset, predictions, metrics


def write_study(results: dict, text: str, args, name: str, repository: Path) -> None:
    """Writes `results` to --output (default results/<name>-<audio-set>.json) and `text` into README's
    `<name with dashes>-<audio-set>` section (unless --no-readme)."""
    output = Path(args.output or repository / "results" / f"{name}-{args.audio_set}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1) + "\n")
    print(text)
    if not args.no_readme:
        replace_section(repository / "README.md", f"{name.replace('_', '-')}-{args.audio_set}", text)
    print(f"wrote {output}" + ("" if args.no_readme else f" and README's table for {args.audio_set}"))


def model_option(args) -> str:
    """`--model` as the documented command shows it: nothing for the default model."""
    return "" if Path(args.model) == Path(DEFAULT_MODEL_DIR) else f" --model {args.model}"


__all__ = ["STUDY_METRICS", "evaluate_copy", "model_option", "study_parser", "study_setup", "write_study"]
