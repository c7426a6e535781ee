"""Evaluates an mdpiano model on an EMOPIA split: 4Q, arousal and valence accuracy, macro-F1, per-class table,
confusion matrix and valence-arousal plane (PNG), results JSON.

    python scripts/evaluate.py --model models/mdpiano-emopia --cache-dir ~/.cache/mdpiano --audio-set test-unseen
    python scripts/evaluate.py ... --audio-dir /path/to/EMOPIA/audio          # any audio named <clip_id>.<ext>
    python scripts/evaluate.py ... --symbolic-source midi                     # symbolic branch from the true MIDI
    python scripts/evaluate.py ... --mode pipeline                            # the end-to-end pipeline per file

Arousal and valence accuracy come from the predicted quadrant, and from the auxiliary heads when the model has
them. Writes results.json, confusion_matrix.png and valence_arousal.png to --output-dir.
"""

import os
import sys

# This folder holds evaluate.py; keep it from shadowing the `evaluate` library that computes the metrics.
sys.path = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import argparse  # noqa: E402
import json
from pathlib import Path

import torch

from mdpiano import MDPianoForAudioClassification, MDPianoProcessor
from mdpiano.checkpoints import DEFAULT_MODEL_DIR
from mdpiano.emopia import load_emopia
from mdpiano.evaluation import clip_predictions, metrics_table, write_report


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="model folder (default: %(default)s)")
    parser.add_argument("--data", default="../shared/data", help="folder holding emopia/ (default: %(default)s)")
    parser.add_argument("--split-scheme", default="emopia_cls", choices=["emopia_cls", "emopia_1.0"])
    parser.add_argument("--split", default="test", choices=["train", "validation", "test"])
    parser.add_argument("--cache-dir", required=True, help="transcriptions and features are cached here")
    parser.add_argument("--audio-set", default="test-unseen", help="audio folder <cache-dir>/audio/<set>")
    parser.add_argument("--audio-dir", help="another folder of audio named <clip_id>.<ext> (overrides --audio-set)")
    parser.add_argument("--mode", default="cached", choices=["cached", "pipeline"])
    parser.add_argument("--symbolic-source", default="transcription", choices=["transcription", "midi"])
    parser.add_argument("--output-dir", help="default: <model>/evaluation/<set>-<split>[-midi][-bfloat16]")
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="the model's weights and features")
    parser.add_argument("--uncalibrated", action="store_true", help="ignore the model's quadrant_logit_bias")
    args = parser.parse_args()

    audio_dir = Path(args.audio_dir) if args.audio_dir else Path(args.cache_dir) / "audio" / args.audio_set
    set_name = args.audio_set if not args.audio_dir else "dir-" + audio_dir.name
    dataset = load_emopia(Path(args.data) / "emopia", args.split_scheme, audio_dir=audio_dir, splits=[args.split])[args.split]
    model = MDPianoForAudioClassification.from_pretrained(args.model, dtype=getattr(torch, args.dtype)).eval()
    if args.uncalibrated:
        model.config.quadrant_logit_bias = None
    processor = MDPianoProcessor.from_pretrained(args.model)
    predictions = clip_predictions(model, processor, dataset, args.cache_dir, set_name, args.mode, args.symbolic_source, args.num_proc)
    suffix = ("-midi" if args.symbolic_source == "midi" else "") + ("" if args.dtype == "float32" else f"-{args.dtype}")
    suffix += "-uncalibrated" if args.uncalibrated else ""
    output_dir = Path(args.output_dir or Path(args.model) / "evaluation" / f"{set_name}-{args.split}{suffix}")
    precision = ("" if args.dtype == "float32" else f", {args.dtype}") + (", uncalibrated" if args.uncalibrated else "")
    title = f"{Path(args.model).name} on EMOPIA {args.split} ({set_name}, {args.mode}, symbols: {args.symbolic_source}{precision})"
    metrics = write_report(predictions, dataset, output_dir, title, extra={"arguments": vars(args)})
    print(title)
    print(metrics_table(metrics))
    print(f"wrote {output_dir}/results.json, confusion_matrix.png, valence_arousal.png")
    print(json.dumps({k: metrics[k] for k in ("accuracy", "arousal_accuracy", "valence_accuracy", "macro_f1")}))


if __name__ == "__main__":
    main()
