"""How a model's accuracy holds when recordings come at sampling rates below the one it reads (22050 Hz).

    python scripts/rate_robustness.py --cache-dir ~/.cache/mdpiano [--audio-set test-new-piano] [--sampling-rates 16000 11025 8000]

Resamples every file of a rendered EMOPIA set (`scripts/render_emopia.py`) to each rate into
<cache-dir>/audio/<set>-<rate>Hz (float WAV: nothing lost but the band above half the rate), evaluates the model as
shipped (calibrated and fused, cached mode, as `scripts/evaluate.py`; the processor resamples each copy back up to
its own rate, as it would a user's recording) on the set as rendered and on each copy, and writes
results/rate_robustness-<set>.json and the table in README's "Low sampling rates". Each evaluation transcribes its
audio once (cached).
"""

import os
import sys

# This folder holds evaluate.py; keep it from shadowing the `evaluate` library that computes the metrics.
sys.path = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import argparse  # noqa: E402
import json  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
from datasets import Audio  # noqa: E402

from mdpiano.checkpoints import DEFAULT_MODEL_DIR, load_model_or_exit  # noqa: E402
from mdpiano.cli import exit_on_input_errors  # noqa: E402
from mdpiano.emopia import DEFAULT_DATA_DIR, load_emopia, split_of_audio_set  # noqa: E402
from mdpiano.evaluation import clip_predictions, replace_section, shown_path, write_report, write_resampled_copies  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
METRICS = ("accuracy", "arousal_accuracy", "valence_accuracy", "macro_f1")


def table(results: dict) -> str:
    lines = [
        f"EMOPIA {results['split']} split ({results['clips']} clips) rendered as `{results['audio_set']}` (files at "
        f"{results['source_rates']}), and the same files resampled to each rate; `{results['model']}` as shipped "
        "(calibrated and fused), which resamples every input to its own rate, "
        f"{results['model_sampling_rate']} Hz. Kept: the share of clips predicted as on the set as rendered.",
        "",
        "| sampling rate | highest frequency | 4Q accuracy | arousal | valence | macro-F1 | kept |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        rate = "as rendered" if row["sampling_rate"] is None else f"{row['sampling_rate']} Hz"
        band = "—" if row["sampling_rate"] is None else f"{row['sampling_rate'] / 2000:.3g} kHz"
        cells = " | ".join(f"{row[name]:.3f}" for name in (*METRICS, "same_prediction"))
        lines.append(f"| {rate} | {band} | {cells} |")
    lines += ["", f"Produced by `{results['command']}`."]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--data", default=str(DEFAULT_DATA_DIR), help="folder holding emopia/ (default: %(default)s)")
    parser.add_argument("--cache-dir", required=True, help="holds audio/<set> and the caches")
    parser.add_argument("--audio-set", default="test-new-piano")
    parser.add_argument("--sampling-rates", type=int, nargs="+", default=[16000, 11025, 8000])
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--output", help="default: results/rate_robustness-<audio-set>.json")
    parser.add_argument("--no-readme", action="store_true", help="do not write README's table")
    args = parser.parse_args()
    if any(rate < 1000 for rate in args.sampling_rates):
        parser.error("--sampling-rates are in Hz, 1000 or more")
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
    rows, clips, reference = [], None, None
    for rate in [None, *args.sampling_rates]:
        set_name = args.audio_set if rate is None else f"{args.audio_set}-{rate}Hz"
        folder = source if rate is None else write_resampled_copies(source, cache_dir / "audio" / set_name, rate)
        splits, report = load_emopia(Path(args.data) / "emopia", audio_dir=folder, splits=[split], return_report=True)
        if report.left_out(split):
            print(f"{set_name}: left out {len(report.left_out(split))} clips (see load_emopia's report)")
        dataset, clips = splits[split], len(splits[split])
        if rate is None:
            files = dataset.cast_column("audio", Audio(decode=False))["audio"]
            source_rates = Counter(soundfile.info(file["path"]).samplerate for file in files)
        predictions = clip_predictions(model, processor, dataset, cache_dir, set_name, num_proc=args.num_proc)
        metrics = write_report(predictions, dataset, cache_dir / "rate-robustness" / set_name, f"{Path(args.model).name} on {set_name}")
        predicted = np.argmax(predictions["probabilities"], axis=1)
        reference = predicted if reference is None else reference
        rows.append({"sampling_rate": rate, **{name: metrics[name] for name in METRICS},
                     "same_prediction": float(np.mean(predicted == reference))})  # fmt: skip
        print(f"{set_name}: 4Q {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}, "
              f"prediction kept {rows[-1]['same_prediction']:.3f}")
    rates = ", ".join(f"{rate} Hz" for rate, _ in source_rates.most_common())
    command = (f"python scripts/rate_robustness.py --cache-dir <cache-dir> --audio-set {args.audio_set} --sampling-rates "
               + " ".join(map(str, args.sampling_rates)) + ("" if Path(args.model) == Path(DEFAULT_MODEL_DIR) else f" --model {args.model}"))  # fmt: skip
    results = {"model": shown_path(args.model, REPOSITORY), "audio_set": args.audio_set, "split": split, "clips": clips,
               "source_rates": rates, "model_sampling_rate": processor.sampling_rate, "rows": rows, "command": command}  # fmt: skip
    output = Path(args.output or REPOSITORY / "results" / f"rate_robustness-{args.audio_set}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1) + "\n")
    text = table(results)
    print(text)
    if not args.no_readme:
        replace_section(REPOSITORY / "README.md", f"rate-robustness-{args.audio_set}", text)
    print(f"wrote {output}" + ("" if args.no_readme else f" and README's table for {args.audio_set}"))


if __name__ == "__main__":
    exit_on_input_errors(main)
