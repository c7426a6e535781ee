"""How a model's accuracy holds as recordings get quieter, with the processor's level floor (`min_peak`) and without.

    python scripts/level_robustness.py --cache-dir ~/.cache/mdpiano [--audio-set test-new-piano] [--gains-db 0 -10 -20 -30 -40]

Scales every file of a rendered EMOPIA set (`scripts/render_emopia.py`) by each gain into
<cache-dir>/audio/<set>-gain<g>dB (float WAV: nothing lost to quantisation), evaluates the model as shipped
(calibrated and fused, cached mode, as `scripts/evaluate.py`) on each, once with the processor's `min_peak` and once
reading the level as it is (`min_peak=None`), and writes results/level_robustness-<set>.json and the set's table in
README's "Quiet recordings" (which has tables for validation-unseen and test-new-piano). Each evaluation transcribes
its audio once (cached).
"""

import os
import sys

# This folder holds evaluate.py; keep it from shadowing the `evaluate` library that computes the metrics.
sys.path = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile  # noqa: E402

from mdpiano.checkpoints import DEFAULT_MODEL_DIR, load_model_or_exit  # noqa: E402
from mdpiano.cli import exit_on_input_errors  # noqa: E402
from mdpiano.emopia import DEFAULT_DATA_DIR, load_emopia, split_of_audio_set  # noqa: E402
from mdpiano.evaluation import clip_predictions, replace_section, shown_path, write_report, write_scaled_copies  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]


def median_peak(folder: Path) -> float:
    return float(np.median([np.abs(soundfile.read(path, dtype="float32")[0]).max() for path in sorted(folder.glob("*.wav"))]))


def table(results: dict) -> str:
    floor = results["min_peak"]
    lines = [
        f"EMOPIA {results['split']} split ({results['clips']} clips) rendered as `{results['audio_set']}`, every file "
        f"scaled by the gain; `{results['model']}` as shipped (calibrated and fused). 4Q accuracy, macro-F1 and kept, with the "
        f"processor's level floor (`min_peak={floor:g}`: a recording peaking lower is raised to it, by at most 30 dB) "
        f"and without it (`min_peak=None`); kept: the share of clips predicted as at {results['rows'][0]['gain_db']:g} dB.",
        "",
        "| gain | median peak | with the floor: 4Q / macro-F1 / kept | without: 4Q / macro-F1 / kept |",
        "|---|---|---|---|",
    ]
    for row in results["rows"]:
        cells = [f"{r['accuracy']:.3f} / {r['macro_f1']:.3f} / {r['same_prediction']:.3f}"
                 for r in (row["with_floor"], row["without_floor"])]  # fmt: skip
        lines.append(f"| {row['gain_db']:g} dB | {row['median_peak']:.3f} | {cells[0]} | {cells[1]} |")
    lines += ["", f"Produced by `{results['command']}`."]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--data", default=str(DEFAULT_DATA_DIR), help="folder holding emopia/ (default: %(default)s)")
    parser.add_argument("--cache-dir", required=True, help="holds audio/<set> and the caches")
    parser.add_argument("--audio-set", default="test-new-piano")
    parser.add_argument("--gains-db", type=float, nargs="+", default=[0.0, -10.0, -20.0, -30.0, -40.0])
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--output", help="default: results/level_robustness-<audio-set>.json")
    parser.add_argument("--no-readme", action="store_true", help="do not write README's table")
    args = parser.parse_args()
    if any(gain > 0 for gain in args.gains_db):
        parser.error("--gains-db are attenuations (0 or below): louder copies would clip")
    try:
        split = split_of_audio_set(args.audio_set)
    except ValueError as error:
        parser.error(str(error))

    cache_dir = Path(args.cache_dir)
    source = cache_dir / "audio" / args.audio_set
    if not source.is_dir():
        raise FileNotFoundError(f"{source} does not exist: render it first (scripts/render_emopia.py --sets {args.audio_set}).")
    model, processor = load_model_or_exit(args.model)
    model.eval()
    floor = processor.min_peak
    if floor is None:
        raise ValueError(f"The processor of {args.model} has no level floor (min_peak is None): nothing to compare.")
    rows, clips, reference = [], None, {}
    for gain_db in args.gains_db:
        set_name = f"{args.audio_set}-gain{gain_db:g}dB"
        folder = write_scaled_copies(source, cache_dir / "audio" / set_name, gain_db)
        splits, report = load_emopia(Path(args.data) / "emopia", audio_dir=folder, splits=[split], return_report=True)
        if report.left_out(split):
            print(f"{set_name}: left out {len(report.left_out(split))} clips (see load_emopia's report)")
        dataset, clips = splits[split], len(splits[split])
        row = {"gain_db": gain_db, "median_peak": median_peak(folder)}
        for key, min_peak in (("with_floor", floor), ("without_floor", None)):
            processor.min_peak = min_peak
            predictions = clip_predictions(model, processor, dataset, cache_dir, set_name, num_proc=args.num_proc)
            output_dir = cache_dir / "level-robustness" / f"{set_name}-{key}"
            metrics = write_report(predictions, dataset, output_dir, f"{Path(args.model).name} on {set_name}, {key}")
            row[key] = {name: metrics[name] for name in ("accuracy", "arousal_accuracy", "valence_accuracy", "macro_f1")}
            # How many clips keep the quadrant they get at the first (loudest) gain: what a user sees change.
            predicted = np.argmax(predictions["probabilities"], axis=1)
            reference.setdefault(key, predicted)
            row[key]["same_prediction"] = float(np.mean(predicted == reference[key]))
            print(f"{set_name} {key}: 4Q {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}, "
                  f"prediction kept {row[key]['same_prediction']:.3f}")
        rows.append(row)
    gains = " ".join(f"{gain:g}" for gain in args.gains_db)
    command = (f"python scripts/level_robustness.py --cache-dir <cache-dir> --audio-set {args.audio_set} "
               f"--gains-db {gains}" + ("" if Path(args.model) == Path(DEFAULT_MODEL_DIR) else f" --model {args.model}"))  # fmt: skip
    results = {"model": shown_path(args.model, REPOSITORY), "audio_set": args.audio_set, "split": split, "clips": clips,
               "min_peak": floor, "rows": rows, "command": command}  # fmt: skip
    output = Path(args.output or REPOSITORY / "results" / f"level_robustness-{args.audio_set}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1) + "\n")
    text = table(results)
    print(text)
    if not args.no_readme:
        replace_section(REPOSITORY / "README.md", f"level-robustness-{args.audio_set}", text)
    print(f"wrote {output}" + ("" if args.no_readme else f" and README's table for {args.audio_set}"))


if __name__ == "__main__":
    exit_on_input_errors(main)
