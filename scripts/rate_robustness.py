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

from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
from datasets import Audio  # noqa: E402

from mdpiano.cli import exit_on_input_errors  # noqa: E402
from mdpiano.evaluation import shown_path, write_resampled_copies  # noqa: E402
from mdpiano.robustness import STUDY_METRICS, evaluate_copy, model_option, study_parser, study_setup, write_study  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]


def band_limited_clause(results: dict) -> str:
    """What the caption says of the fusion's weight for recordings below the model's rate, if the model has one."""
    weight = results.get("band_limited_network_weight")
    if weight is None:
        return ""
    return (f", and fuses a recording stored below that rate with the network weighted {weight:g} against the note "
            f"statistics (`band_limited_network_weight`), {results['network_weight']:g} otherwise")


def table(results: dict) -> str:
    lines = [
        f"EMOPIA {results['split']} split ({results['clips']} clips) rendered as `{results['audio_set']}` (files at "
        f"{results['source_rates']}), and the same files resampled to each rate; `{results['model']}` as shipped "
        "(calibrated and fused), which resamples every input to its own rate, "
        f"{results['model_sampling_rate']} Hz{band_limited_clause(results)}. Kept: the share of clips predicted as on "
        "the set as rendered.",
        "",
        "| sampling rate | highest frequency | 4Q accuracy | arousal | valence | macro-F1 | kept |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        rate = "as rendered" if row["sampling_rate"] is None else f"{row['sampling_rate']} Hz"
        band = "—" if row["sampling_rate"] is None else f"{row['sampling_rate'] / 2000:.3g} kHz"
        cells = " | ".join(f"{row[name]:.3f}" for name in (*STUDY_METRICS, "same_prediction"))
        lines.append(f"| {rate} | {band} | {cells} |")
    lines += ["", f"Produced by `{results['command']}`."]
    return "\n".join(lines)


def main():
    parser = study_parser(__doc__, "rate_robustness")
    parser.add_argument("--sampling-rates", type=int, nargs="+", default=[16000, 11025, 8000])
    args = parser.parse_args()
    if any(rate < 1000 for rate in args.sampling_rates):
        parser.error("--sampling-rates are in Hz, 1000 or more")
    split, source, model, processor = study_setup(args, parser)
    cache_dir = Path(args.cache_dir)
    rows, reference, source_rates = [], None, Counter()
    for rate in [None, *args.sampling_rates]:
        set_name = args.audio_set if rate is None else f"{args.audio_set}-{rate}Hz"
        folder = source if rate is None else write_resampled_copies(source, cache_dir / "audio" / set_name, rate)
        report_dir = cache_dir / "rate-robustness" / set_name
        dataset, predictions, metrics = evaluate_copy(args, model, processor, split, folder, set_name, report_dir)
        if rate is None:
            files = dataset.cast_column("audio", Audio(decode=False))["audio"]
            source_rates = Counter(soundfile.info(file["path"]).samplerate for file in files)
        predicted = np.argmax(predictions["probabilities"], axis=1)
        reference = predicted if reference is None else reference
        rows.append({"sampling_rate": rate, **{name: metrics[name] for name in STUDY_METRICS},
                     "same_prediction": float(np.mean(predicted == reference))})  # fmt: skip
        print(f"{set_name}: 4Q {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}, "
              f"prediction kept {rows[-1]['same_prediction']:.3f}")
    rates = ", ".join(f"{rate} Hz" for rate, _ in source_rates.most_common())
    command = (f"python scripts/rate_robustness.py --cache-dir <cache-dir> --audio-set {args.audio_set} --sampling-rates "
               + " ".join(map(str, args.sampling_rates)) + model_option(args))  # fmt: skip
    results = {"model": shown_path(args.model, REPOSITORY), "audio_set": args.audio_set, "split": split,
               "clips": len(dataset), "source_rates": rates, "model_sampling_rate": processor.sampling_rate,
               "rows": rows, "command": command}  # fmt: skip
    fusion = model.config.note_statistics_fusion
    if fusion is not None and "band_limited_network_weight" in fusion:
        results.update(network_weight=fusion["network_weight"], band_limited_network_weight=fusion["band_limited_network_weight"])
    write_study(results, table(results), args, "rate_robustness", REPOSITORY)


if __name__ == "__main__":
    exit_on_input_errors(main)
