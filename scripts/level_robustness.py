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

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile  # noqa: E402

from mdpiano.cli import exit_on_input_errors  # noqa: E402
from mdpiano.evaluation import shown_path, write_scaled_copies  # noqa: E402
from mdpiano.robustness import STUDY_METRICS, evaluate_copy, model_option, study_parser, study_setup, write_study  # noqa: E402

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
    parser = study_parser(__doc__, "level_robustness")
    parser.add_argument("--gains-db", type=float, nargs="+", default=[0.0, -10.0, -20.0, -30.0, -40.0])
    args = parser.parse_args()
    if any(gain > 0 for gain in args.gains_db):
        parser.error("--gains-db are attenuations (0 or below): louder copies would clip")
    split, source, model, processor = study_setup(args, parser)
    floor = processor.min_peak
    if floor is None:
        raise ValueError(f"The processor of {args.model} has no level floor (min_peak is None): nothing to compare.")
    cache_dir = Path(args.cache_dir)
    rows, clips, reference = [], None, {}
    for gain_db in args.gains_db:
        set_name = f"{args.audio_set}-gain{gain_db:g}dB"
        folder = write_scaled_copies(source, cache_dir / "audio" / set_name, gain_db)
        row = {"gain_db": gain_db, "median_peak": median_peak(folder)}
        for key, min_peak in (("with_floor", floor), ("without_floor", None)):
            processor.min_peak = min_peak
            report_dir = cache_dir / "level-robustness" / f"{set_name}-{key}"
            dataset, predictions, metrics = evaluate_copy(args, model, processor, split, folder, set_name, report_dir)
            clips = len(dataset)
            row[key] = {name: metrics[name] for name in STUDY_METRICS}
            # How many clips keep the quadrant they get at the first (loudest) gain: what a user sees change.
            predicted = np.argmax(predictions["probabilities"], axis=1)
            reference.setdefault(key, predicted)
            row[key]["same_prediction"] = float(np.mean(predicted == reference[key]))
            print(f"{set_name} {key}: 4Q {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}, "
                  f"prediction kept {row[key]['same_prediction']:.3f}")
        rows.append(row)
    gains = " ".join(f"{gain:g}" for gain in args.gains_db)
    command = (f"python scripts/level_robustness.py --cache-dir <cache-dir> --audio-set {args.audio_set} "
               f"--gains-db {gains}{model_option(args)}")  # fmt: skip
    results = {"model": shown_path(args.model, REPOSITORY), "audio_set": args.audio_set, "split": split, "clips": clips,
               "min_peak": floor, "rows": rows, "command": command}  # fmt: skip
    write_study(results, table(results), args, "level_robustness", REPOSITORY)


if __name__ == "__main__":
    exit_on_input_errors(main)
