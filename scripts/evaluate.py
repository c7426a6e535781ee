"""Evaluates an mdpiano model on an EMOPIA split or on your own labelled audio: 4Q, arousal and valence accuracy,
macro-F1, per-class table, confusion matrix and valence-arousal plane (PNG), results JSON.

    python scripts/evaluate.py --model models/mdpiano-emopia --cache-dir ~/.cache/mdpiano --audio-set test-new-piano
    python scripts/evaluate.py ... --audio-dir /path/to/EMOPIA/audio          # any audio named <clip_id>.<ext>
    python scripts/evaluate.py ... --symbolic-source midi                     # symbolic branch from the true MIDI
    python scripts/evaluate.py ... --mode pipeline                            # the end-to-end pipeline per file
    python scripts/evaluate.py --model runs/mine/best --cache-dir ... --labelled-data my_test/   # Q1..Q4 folders or CSV
    python scripts/evaluate.py --model runs/mine/best --cache-dir ... --labelled-data my_validation/ --fit-calibration

Arousal and valence accuracy come from the predicted quadrant, and from the auxiliary heads when the model has
them. Writes results.json, confusion_matrix.png and valence_arousal.png to --output-dir. --fit-calibration fits the
model's decision offsets (`quadrant_logit_bias`, see mdpiano.calibration) on these clips, saves them in the model
folder's config.json and reports the calibrated figures (optimistic: fitted on the same clips); use held-out
validation audio, then evaluate on your test audio.
"""

import os
import sys

# This folder holds evaluate.py; keep it from shadowing the `evaluate` library that computes the metrics.
sys.path = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import argparse  # noqa: E402
import json
import site
import sysconfig
from pathlib import Path

import numpy as np
import torch

from mdpiano.caching import source_cache_name
from mdpiano.calibration import calibrate
from mdpiano.checkpoints import DEFAULT_MODEL_DIR, load_model_or_exit
from mdpiano.cli import exit_on_input_errors
from mdpiano.emopia import DEFAULT_DATA_DIR, load_emopia, split_of_audio_set
from mdpiano.evaluation import clip_predictions, metrics_table, write_report
from mdpiano.labelled_audio import load_labelled_audio
from mdpiano.pipeline_mdpiano import apply_quadrant_bias, check_stride
from mdpiano.plots import pyplot
from mdpiano.statistics_fusion import FUSION_FIELDS


def installed_with_a_package(folder) -> bool:
    """Whether `folder` lies in an environment's site-packages (the shipped model of a non-editable install), where
    reports and calibrations do not belong: `pip uninstall` would leave them behind, or a reinstall undo them."""
    roots = {sysconfig.get_paths()[name] for name in ("purelib", "platlib")} | {site.getusersitepackages()}
    return any(Path(folder).resolve().is_relative_to(Path(root).resolve()) for root in roots)


def evaluation_data(args) -> tuple:
    """
    The clips to evaluate, their cache set name, the name of their report folder, a description for the report, and
    what was left out: EMOPIA's listed clips without audio, MIDI or label, or the labelled audio's files (with why).
    """
    if args.labelled_data:
        name = source_cache_name("user", args.labelled_data)
        dataset, left_out = load_labelled_audio(args.labelled_data, return_left_out=True)
        return dataset, name, name, str(args.labelled_data), left_out
    if args.audio_dir:
        audio_dir, set_name = Path(args.audio_dir), source_cache_name("dir", args.audio_dir)
    else:
        audio_dir, set_name = Path(args.cache_dir) / "audio" / args.audio_set, args.audio_set
    splits, report = load_emopia(Path(args.data) / "emopia", args.split_scheme, audio_dir=audio_dir, splits=[args.split],
                                 return_report=True)  # fmt: skip
    dataset = splits[args.split]
    if len(dataset) == 0:
        names = {path.stem for path in audio_dir.iterdir()} if audio_dir.is_dir() else set()
        other_splits = [split for split in ("train", "validation", "test") if split != args.split and
                        names & set(load_emopia(Path(args.data) / "emopia", args.split_scheme, splits=[split])[split]["clip_id"])]  # fmt: skip
        hint = f"it holds {' and '.join(other_splits)} clips: add --split {other_splits[0]}" if other_splits else (
            "for your own labelled audio use --labelled-data")  # fmt: skip
        raise ValueError(f"None of the EMOPIA {args.split} clips has audio in {audio_dir} (files named <clip_id>.<ext>); "
                         f"{hint}.")  # fmt: skip
    return dataset, set_name, f"{set_name}-{args.split}", f"EMOPIA {args.split} ({audio_dir.name})", report.left_out(args.split)


def fit_calibration(predictions: dict, dataset, model_dir) -> dict:
    """
    Fits `quadrant_logit_bias` on uncalibrated, unfused clip predictions (the offsets apply before any fusion) and
    writes it into the model folder's config.json, whose other fields stay as they are (its fusions; a Hub folder's
    `auto_map`, which `save_pretrained` would rewrite, with module copies beside it); returns the calibrated predictions.
    """
    bias, scores = calibrate(predictions["probabilities"], np.array(dataset["label"]))
    config_path = Path(model_dir) / "config.json"
    config = json.loads(config_path.read_text())
    config["quadrant_logit_bias"] = [float(offset) for offset in bias]
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (f1_before, f1_after), (accuracy_before, accuracy_after) = scores["macro_f1"], scores["accuracy"]
    print(f"quadrant_logit_bias {bias} saved in {Path(model_dir) / 'config.json'}: on these {len(dataset)} clips, "
          f"macro-F1 {f1_before:.3f} -> {f1_after:.3f}, 4Q accuracy {accuracy_before:.3f} -> {accuracy_after:.3f}")  # fmt: skip
    probabilities = apply_quadrant_bias(torch.as_tensor(predictions["probabilities"]), bias).numpy()
    return {**predictions, "probabilities": probabilities}


EMOPIA_ARGUMENTS = ("data", "split_scheme", "split", "audio_set", "audio_dir")  # what --labelled-data replaces


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="model folder (default: %(default)s)")
    parser.add_argument("--data", default=str(DEFAULT_DATA_DIR), help="folder holding emopia/ (default: %(default)s)")
    parser.add_argument("--split-scheme", default="emopia_cls", choices=["emopia_cls", "emopia_1.0"])
    parser.add_argument("--split", choices=["train", "validation", "test"],
                        help="default: the split --audio-set renders (test-* test, validation-* validation), else test")
    parser.add_argument("--cache-dir", required=True, help="transcriptions and features are cached here")
    parser.add_argument("--audio-set", default="test-new-piano", help="audio folder <cache-dir>/audio/<set>")
    parser.add_argument("--audio-dir", help="another folder of audio named <clip_id>.<ext> (overrides --audio-set)")
    parser.add_argument("--labelled-data", help="your labelled audio instead of EMOPIA: a folder of Q1..Q4 sub-folders, "
                        "or a CSV with columns path,label (as scripts/train.py --train-data)")  # fmt: skip
    parser.add_argument("--mode", default="cached", choices=["cached", "pipeline"])
    parser.add_argument("--symbolic-source", default="transcription", choices=["transcription", "midi"])
    parser.add_argument("--output-dir", help="default: <model>/evaluation/<set>-<split>, plus -midi, -bfloat16, "
                        "-uncalibrated or -calibration-fit and -stride-<s>s as those options are given "
                        "(user-<hash> for --labelled-data); evaluation/<model name>/... here for a model installed "
                        "in site-packages")  # fmt: skip
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="the model's weights and features")
    parser.add_argument("--stride-s", type=float, help="hop between analysis windows, as the pipeline's stride_length_s "
                        "(default: one window, no overlap)")
    parser.add_argument("--uncalibrated", action="store_true", help="ignore the model's quadrant_logit_bias")
    parser.add_argument("--unfused", action="store_true", help="ignore the model's note-statistics fusions: the network alone")
    parser.add_argument("--fit-calibration", action="store_true",
                        help="fit quadrant_logit_bias on these clips and save it in the model folder's config.json")  # fmt: skip
    args = parser.parse_args()
    if args.split is None:  # the split the audio set renders; test for any other folder
        try:
            args.split = "test" if args.audio_dir or args.labelled_data else split_of_audio_set(args.audio_set)
        except ValueError:
            args.split = "test"

    if args.labelled_data and args.symbolic_source == "midi":
        parser.error("--symbolic-source midi needs EMOPIA's MIDI: not with --labelled-data")
    if args.mode == "pipeline" and args.symbolic_source == "midi":
        parser.error("--mode pipeline transcribes the audio, as a user's pipeline does: --symbolic-source midi needs "
                     "--mode cached")  # fmt: skip
    if args.fit_calibration and (args.dtype != "float32" or args.symbolic_source != "transcription"
                                 or not (Path(args.model) / "config.json").is_file()):  # fmt: skip
        parser.error("--fit-calibration needs a local model folder, float32 and transcriptions (what the pipeline uses)")
    if args.fit_calibration and installed_with_a_package(args.model):
        parser.error(f"--fit-calibration writes the model's config.json, and {args.model} is part of an installed "
                     "package: copy the folder and calibrate the copy")  # fmt: skip
    if args.stride_s is not None and not args.stride_s > 0:
        parser.error(f"--stride-s must be a positive number of seconds, got {args.stride_s}")
    if args.stride_s and args.fit_calibration:
        parser.error("--fit-calibration fits offsets for the pipeline's default windows: leave out --stride-s")
    try:
        pyplot()  # the figures come last: a missing matplotlib is said before hours of transcription
        dataset, set_name, report_name, source, skipped = evaluation_data(args)
    except (ValueError, FileNotFoundError, ImportError) as error:
        sys.exit(f"error: {error}")
    model, processor = load_model_or_exit(args.model, dtype=getattr(torch, args.dtype))
    model.eval()
    if args.stride_s is not None:
        try:
            check_stride(args.stride_s, processor.feature_extractor, "--stride-s")
        except ValueError as error:
            parser.error(str(error))
    if args.uncalibrated or args.fit_calibration:
        model.config.quadrant_logit_bias = None
    fusions = {field: getattr(model.config, field) for field in FUSION_FIELDS.values()}
    if args.unfused or args.fit_calibration:
        model.config.update(dict.fromkeys(fusions))
    try:
        predictions = clip_predictions(model, processor, dataset, args.cache_dir, set_name, args.mode, args.symbolic_source,
                                       args.num_proc, stride_s=args.stride_s)  # fmt: skip
    except ValueError as error:  # undecodable audio (AudioDecodeError), clips too short for the model
        sys.exit(f"error: {error}")
    if args.fit_calibration:
        predictions = fit_calibration(predictions, dataset, args.model)
    suffix = ("-midi" if args.symbolic_source == "midi" else "") + ("" if args.dtype == "float32" else f"-{args.dtype}")
    suffix += "-uncalibrated" if args.uncalibrated else "-calibration-fit" if args.fit_calibration else ""
    fuses = fusions[FUSION_FIELDS[args.symbolic_source]] is not None  # the fusion for this source's notes
    suffix += "-unfused" if args.unfused and fuses else ""
    suffix += f"-stride-{args.stride_s:g}s" if args.stride_s else ""
    reports = Path("evaluation", Path(args.model).name) if installed_with_a_package(args.model) else Path(args.model, "evaluation")
    output_dir = Path(args.output_dir or reports / f"{report_name}{suffix}")
    precision = ("" if args.dtype == "float32" else f", {args.dtype}") + (", uncalibrated" if args.uncalibrated else "")
    precision += ", calibration fitted on these clips" if args.fit_calibration else ""
    precision += ", the network alone (no note-statistics fusion)" if fuses and (args.unfused or args.fit_calibration) else ""
    precision += f", windows every {args.stride_s:g} s" if args.stride_s else ""
    title = f"{Path(args.model).name} on {source} ({args.mode}, symbols: {args.symbolic_source}{precision})"
    # With --labelled-data, the EMOPIA arguments (at their defaults) were not read: not recorded as if they were.
    arguments = {name: value for name, value in vars(args).items() if not (args.labelled_data and name in EMOPIA_ARGUMENTS)}
    extra = {"arguments": arguments, "clips_evaluated": len(dataset), "clips_skipped": skipped}
    metrics = write_report(predictions, dataset, output_dir, title, extra=extra)
    if skipped:
        print(f"Left out: {len(skipped)} (see clips_skipped in results.json)")
    print(title)
    print(metrics_table(metrics))
    print(f"wrote {output_dir}/results.json, confusion_matrix.png, valence_arousal.png")
    print(json.dumps({k: metrics[k] for k in ("accuracy", "arousal_accuracy", "valence_accuracy", "macro_f1")}))


if __name__ == "__main__":
    exit_on_input_errors(main)
