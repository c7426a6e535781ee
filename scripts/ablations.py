r"""Trains and evaluates the full model and the paper's Table 4 ablations over several seeds, then writes the table
(mean ± standard deviation) into README.md and model_card.md.

    python scripts/ablations.py --cache-dir ~/.cache/mdpiano --output-dir runs/ablations \
        --config configs/emopia-cpu.json --symbolic-pretrained runs/symbolic-mlm/best --seeds 0 1 2

Each run trains with scripts/train.py (early stopping on validation accuracy) and is evaluated on the test split
rendered in --test-set (default test-unseen: a room, EQ, noise and codec training never saw, on a piano it knows;
test-new-piano holds out the piano too). Finished runs are kept:
rerunning the command only does what is missing, then rewrites the table. With --finished-only it trains nothing and
tabulates the runs that have results (say, some trained on another machine); the caption names the runs it lacks.
"""

import os
import sys

# This folder holds evaluate.py; keep it from shadowing the `evaluate` library that computes the metrics.
sys.path = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import argparse  # noqa: E402
import json
import subprocess
from pathlib import Path

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from mdpiano import MDPianoForAudioClassification, MDPianoProcessor
from mdpiano.cli import exit_on_input_errors
from mdpiano.clip_archive import clip_source, read_clip_archive
from mdpiano.emopia import DEFAULT_DATA_DIR, load_emopia
from mdpiano.evaluation import clip_predictions, replace_section, write_report
from mdpiano.training import WindowBatcher, device_description, predict_clips, recorded_validation_sets

REPOSITORY = Path(__file__).resolve().parents[1]
# The paper's Table 4 rows (Zhu et al., ADMA 2023) as config changes from the full model, and this package's own
# variants ("train_args": extra scripts/train.py arguments).
VARIANTS = {
    "full": {},
    "acoustic-only": {"domains": "acoustic"},
    "symbolic-only": {"domains": "symbolic"},
    "stft-input": {"acoustic_input": "stft", "n_fft": 1024},
    "single-loss": {"use_auxiliary_losses": False},
    "augmented": {"train_args": ["--augment-features"]},  # the full model, features through random recording chains
}
PAPER = {  # 4Q / arousal / valence accuracy on EMOPIA, as reported in the paper
    "full": (0.708, 0.874, 0.869),
    "acoustic-only": (0.630, 0.902, 0.697),
    "symbolic-only": (0.651, 0.843, 0.891),
    "stft-input": (0.689, 0.804, 0.871),
    "single-loss": (0.683, 0.845, 0.883),
}


def train_command(args, variant: str, seed: int, run_dir: Path) -> list[str]:
    command = [sys.executable, str(REPOSITORY / "scripts" / "train.py"), "--data", args.data, "--output-dir", str(run_dir),
               "--seed", str(seed), "--epochs", str(args.epochs), "--patience", str(args.patience),
               "--num-proc", str(args.num_proc), "--resume"]  # fmt: skip
    command += ["--clips", args.clips] if args.clips else ["--cache-dir", args.cache_dir]
    if args.config:
        command += ["--config", args.config]
    for key, value in VARIANTS[variant].items():
        command += value if key == "train_args" else ["--set", f"{key}={json.dumps(value)}"]
    if args.symbolic_pretrained and VARIANTS[variant].get("domains") != "acoustic":
        command += ["--symbolic-pretrained", args.symbolic_pretrained]
    return command + args.train_args


def predict_test_set(args, model, processor):
    """Clip-level predictions on the test set, and its `clip_id` and `label` columns."""
    if args.clips:
        clips = read_clip_archive(args.clips, args.test_set, processor.feature_extractor, clip_source(processor))
        use_acoustic = model.config.domains in ("both", "acoustic")
        predictions = predict_clips(model, WindowBatcher(processor, use_acoustic), clips)
        return predictions, {"clip_id": [c.clip_id for c in clips], "label": [c.label for c in clips]}
    audio_dir = Path(args.cache_dir) / "audio" / args.test_set
    dataset = load_emopia(Path(args.data) / "emopia", audio_dir=audio_dir, splits=["test"])["test"]
    return clip_predictions(model, processor, dataset, args.cache_dir, args.test_set, num_proc=args.num_proc), dataset


def run_dir_of(args, variant: str, seed: int) -> Path:
    return Path(args.output_dir) / variant / f"seed-{seed}"


def run_one(args, variant: str, seed: int) -> dict:
    """Test metrics of one variant and seed, and its best validation accuracy; trains and evaluates it first unless
    its results exist."""
    run_dir = run_dir_of(args, variant, seed)
    results_path = run_dir / "evaluation" / "results.json"
    if not results_path.is_file():
        train_and_evaluate(args, variant, seed, run_dir)
    elif json.loads(results_path.read_text()).get("test_set") != args.test_set:  # trained: evaluated on another set
        evaluate(args, variant, seed, run_dir)
    validation = json.loads((run_dir / "best_validation.json").read_text())["validation_accuracy"]
    return {**json.loads(results_path.read_text())["metrics"], "validation_accuracy": validation}


def train_and_evaluate(args, variant: str, seed: int, run_dir: Path) -> None:
    command = train_command(args, variant, seed, run_dir)
    print(f"== {variant}, seed {seed}: {' '.join(command)}", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.jobs > 1:  # concurrent runs write their progress to their own log
        with open(run_dir / "train.log", "w") as log:
            finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
        if finished.returncode:
            raise RuntimeError(f"{variant}, seed {seed} failed (exit {finished.returncode}); see {run_dir / 'train.log'}")
    else:
        subprocess.run(command, check=True)
    evaluate(args, variant, seed, run_dir)


def evaluate(args, variant: str, seed: int, run_dir: Path) -> None:
    """Evaluates a run's best model on `args.test_set` into <run>/evaluation/."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = MDPianoForAudioClassification.from_pretrained(run_dir / "best").eval().to(device)
    processor = MDPianoProcessor.from_pretrained(run_dir / "best")
    predictions, test = predict_test_set(args, model, processor)
    trained_on = device_description()
    print(f"== {variant}, seed {seed}: done", flush=True)
    write_report(predictions, test, run_dir / "evaluation", f"{variant}, seed {seed} on EMOPIA test ({args.test_set})",
                        extra={"trained_on": trained_on, "test_set": args.test_set})  # fmt: skip


def table(results: dict, args, runs: dict, unfinished: list[tuple[str, int]]) -> str:
    """
    The Markdown table of the runs' test metrics with its caption. `runs` holds what the runs themselves recorded:
    `num_test_clips`, `test_sets`, `trained_on`, `validation_sets` (each run's, a tuple of names) and `budgets`
    ((epochs, patience) pairs).
    """
    def cell(values):
        return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"

    spread = f"mean ± standard deviation over seeds {', '.join(map(str, args.seeds))}" if len(args.seeds) > 1 else f"one seed ({args.seeds[0]})"
    # Name the paper's rows left out only for a table of its ablations (two rows of it or more), not for, say, full
    # against augmented.
    ablated = sum(variant in PAPER for variant in results) >= 2
    not_run = [v for v in PAPER if v not in results and v not in {u for u, _ in unfinished}] if ablated else []
    budget = " or ".join(f"{epochs} epochs (early stopping patience {patience})" for epochs, patience in runs["budgets"])
    validation_sets = runs["validation_sets"]
    lines = [
        f"EMOPIA test split (emopia_cls, {runs['num_test_clips']} clips) rendered as "
        f"{' / '.join(f'`{name}`' for name in runs['test_sets'])}; {spread}; each run trained for at most {budget}"
        + (", the same budget for every variant" if len(runs["budgets"]) == 1 else "")
        + ". Arousal and valence accuracy are read off the predicted quadrant. Validation: the best epoch's 4Q "
        "accuracy on the validation split rendered as "
        + " / ".join(" and ".join(f"`{name}`" for name in sets) for sets in validation_sets)
        + (" (the mean over the renderings a run was validated on)" if any(len(sets) > 1 for sets in validation_sets) else "")
        + (" (like the training audio)" if validation_sets == [("validation",)] else "")
        + ", the early-stopping criterion. "
        "Paper: Zhu et al. (2023), Table 4, on EMOPIA's recordings."
        + (f" Not run: {', '.join(not_run)}." if not_run else "")
        + (f" Not finished, left out: {', '.join(f'{v} seed {s}' for v, s in unfinished)}." if unfinished else "")
        + f" Trained on: {', '.join(runs['trained_on'])}."
        + (f" Training arguments added to every run: `{' '.join(args.train_args)}`." if args.train_args else ""),
        "",
        "| model | runs | 4Q accuracy | arousal | valence | macro-F1 | validation 4Q | paper 4Q / A / V |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant, runs in results.items():
        paper = " / ".join(f"{v:.3f}" for v in PAPER[variant]) if variant in PAPER else "—"
        lines.append(
            f"| {variant} | {len(runs)} | {cell([r['accuracy'] for r in runs])} | {cell([r['arousal_accuracy'] for r in runs])} "
            f"| {cell([r['valence_accuracy'] for r in runs])} | {cell([r['macro_f1'] for r in runs])} "
            f"| {cell([r['validation_accuracy'] for r in runs])} | {paper} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--cache-dir", help="audio and caches (or --clips)")
    parser.add_argument("--clips", help="a clip archive (scripts/export_clips.py) holding the train, validation and test sets")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time (e.g. several on one GPU)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--config", help="JSON file of MDPianoConfig values shared by every variant")
    parser.add_argument("--symbolic-pretrained", help="pretrained symbolic encoder for the variants that have one")
    parser.add_argument("--variants", nargs="+", default=list(PAPER), choices=list(VARIANTS),
                        help="default: the paper's Table 4 rows; also: augmented")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--test-set", default="test-unseen")
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--finished-only", action="store_true", help="train nothing: tabulate the runs that have results")
    parser.add_argument("--no-docs", action="store_true", help="do not write the table into README.md and model_card.md")
    parser.add_argument("--section", default="ablations", help="the marked section of README.md and model_card.md to write")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="after --: more scripts/train.py arguments")
    args = parser.parse_args()
    args.train_args = [a for a in args.train_args if a != "--"]
    if not (args.cache_dir or args.clips or args.finished_only):
        parser.error("give --cache-dir (audio and caches) or --clips (a clip archive)")
    for flag, value in (("--jobs", args.jobs), ("--epochs", args.epochs), ("--patience", args.patience), ("--num-proc", args.num_proc)):
        if value < 1:  # train.py would refuse it only after the run folders exist
            parser.error(f"{flag} must be at least 1, got {value}")
    args.variants, args.seeds = list(dict.fromkeys(args.variants)), list(dict.fromkeys(args.seeds))
    if args.clips and "stft-input" in args.variants and not args.finished_only:
        parser.error("stft-input needs STFT features, which a clip archive of the mixed features lacks: use --cache-dir")
    if not args.finished_only:  # the test set is read after hours of training: check it is there first
        if args.clips:
            manifest = Path(args.clips) / "archive.json"
            if not manifest.is_file() or args.test_set not in json.loads(manifest.read_text()).get("sets", {}):
                parser.error(f"the clip archive {args.clips} holds no {args.test_set!r} set: add it with "
                             f"scripts/export_clips.py --sets {args.test_set}")  # fmt: skip
        elif not (Path(args.cache_dir) / "audio" / args.test_set).is_dir():
            parser.error(f"{Path(args.cache_dir) / 'audio'} holds no {args.test_set}: render it first "
                         f"(scripts/render_emopia.py --cache-dir {args.cache_dir} --sets {args.test_set})")  # fmt: skip

    runs = [(variant, seed) for variant in args.variants for seed in args.seeds]
    unfinished = []
    if args.finished_only:
        unfinished = [run for run in runs if not all((run_dir_of(args, *run) / name).is_file()
                                                     for name in ("evaluation/results.json", "best_validation.json"))]  # fmt: skip
        runs = [run for run in runs if run not in unfinished]
        if not runs:
            parser.error(f"--finished-only: no run under {args.output_dir} has results")
    with ThreadPoolExecutor(args.jobs) as pool:
        metrics = list(pool.map(lambda run: run_one(args, *run), runs))
    results = {variant: [m for (v, _), m in zip(runs, metrics) if v == variant] for variant in args.variants}
    results = {variant: metrics for variant, metrics in results.items() if metrics}
    run_dirs = [run_dir_of(args, *run) for run in runs]
    reports = [json.loads((run_dir / "evaluation" / "results.json").read_text()) for run_dir in run_dirs]
    arguments = [json.loads((run_dir / "arguments.json").read_text()) for run_dir in run_dirs]
    recorded = {  # from the runs, not this command line: --finished-only may tabulate runs made with other flags
        "num_test_clips": len(reports[0]["clips"]),
        "test_sets": sorted({report.get("test_set", args.test_set) for report in reports}),
        "trained_on": sorted({report.get("trained_on", "unrecorded") for report in reports}),
        "validation_sets": sorted({tuple(recorded_validation_sets(a)) for a in arguments}),
        "budgets": sorted({(a["epochs"], a["patience"]) for a in arguments}),
    }
    text = table(results, args, recorded, unfinished)
    command = "python scripts/ablations.py " + " ".join(sys.argv[1:])
    for path, placeholder in ((args.cache_dir, "<cache-dir>"), (args.clips, "<clip-archive>")):
        if path:
            command = command.replace(path, placeholder)
    text += f"\n\nProduced by `{command}`."
    (Path(args.output_dir) / "ablations.md").write_text(text + "\n")
    print(text)
    if not args.no_docs:
        for document in ("README.md", "model_card.md"):
            replace_section(REPOSITORY / document, args.section, text)


if __name__ == "__main__":
    exit_on_input_errors(main)
