"""The `mdpiano` command: classify piano recordings (or MIDI files) by emotion quadrant, and transcribe them.

    mdpiano predict recording.wav more_recordings/ [--format table|json|csv] [--timeline] [--midi-out DIR]
    mdpiano transcribe recording.wav --out DIR
"""

import argparse
import contextlib
import csv
import io
import json
import os
import sys
from collections import Counter
from pathlib import Path

from .emopia import AUDIO_EXTENSIONS as AUDIO_SUFFIXES
from .pipeline_mdpiano import MIDI_SUFFIXES

AUDIO_EXTENSIONS, MIDI_EXTENSIONS = set(AUDIO_SUFFIXES), set(MIDI_SUFFIXES)


def expand_inputs(
    paths: list[str], extensions: set[str] = AUDIO_EXTENSIONS | MIDI_EXTENSIONS
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to process (folders expanded to their files with these extensions, recursively, sorted), and errors for
    paths that do not exist."""
    files, errors = [], []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
            if not found:
                errors.append((text, f"folder holds no {'audio or MIDI' if MIDI_EXTENSIONS <= extensions else 'audio'} files"))
            files += found
        elif path.exists():
            files.append(path)
        else:
            errors.append((text, "file or folder not found"))
    return files, errors


def midi_output_paths(files: list[Path], out_dir: str) -> dict[Path, Path]:
    """
    Where each input's transcription is written: `<out_dir>/<stem>.mid`, or, where stems collide or that name is one
    of the inputs, a name made of the input's path below the inputs' common folder (`d1__x.wav.mid`): no output
    overwrites an input or another output.
    """
    if not files:
        return {}
    resolved = {path: path.resolve() for path in files}
    common = Path(os.path.commonpath([str(path.parent) for path in resolved.values()]))
    stems = Counter(path.stem for path in files)
    targets = {}
    for path in files:
        target = Path(out_dir) / f"{path.stem}.mid"
        if stems[path.stem] > 1 or target.resolve() in resolved.values():
            target = Path(out_dir) / ("__".join(resolved[path].relative_to(common).parts) + ".mid")
        targets[path] = target
    return targets


def check_output_file(path: str | None) -> None:
    """Refuses, before any work, an output file whose folder does not exist."""
    if path and not Path(path).resolve().parent.is_dir():
        raise SystemExit(f"error: cannot write {path}: its folder does not exist.")


def check_output_folder(path: str) -> None:
    """Creates an output folder, or refuses a path that is a file, before any work."""
    if Path(path).exists() and not Path(path).is_dir():
        raise SystemExit(f"error: {path} is a file; give a folder for the MIDI files.")
    os.makedirs(path, exist_ok=True)


def load_pipeline(model_dir: str, device: str):
    from transformers import pipeline
    from transformers.utils import logging

    import mdpiano  # noqa: F401  (registers the mdpiano pipeline and Auto classes)

    logging.disable_progress_bar()  # the weight-loading bar; the command shows its own per file

    if Path(model_dir).is_dir() and not any(Path(model_dir).glob("*.safetensors")):
        raise SystemExit(f"error: {model_dir} holds no model weights (model.safetensors); pass --model <trained folder>.")
    try:
        return pipeline("audio-classification", model=model_dir, device=device)
    except (AssertionError, RuntimeError) as error:  # e.g. --device cuda with a CPU-only torch
        raise SystemExit(f"error: cannot run the model on --device {device}: {error}") from error
    except OSError as error:  # neither a folder nor a Hub id that can be downloaded
        raise SystemExit(f"error: cannot load the model {model_dir}: {error}") from error


def predict(args) -> int:
    # Libraries print notices on stdout (pyfluidsynth does when `CI` is set); the JSON/CSV there must stay parseable.
    with contextlib.redirect_stdout(sys.stderr):
        results, errors = classify_files(args)
    text = {"table": format_table, "json": format_json, "csv": format_csv}[args.format](results, args.timeline)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return report_errors(errors)


def classify_files(args) -> tuple[list[dict], list[tuple[str, str]]]:
    """One result record per file that could be classified, and (path, message) for each that could not."""
    from tqdm.auto import tqdm

    from .configuration_mdpiano import QUADRANT_NAMES

    files, errors = expand_inputs(args.paths)
    classifier = load_pipeline(args.model, args.device)
    if args.midi_out:
        midi_paths = midi_output_paths(files, args.midi_out)
    results = []
    for path in tqdm(files, desc="Classifying", unit="file", disable=args.quiet or len(files) < 2):
        try:
            output = classifier(str(path), return_timeline=True, return_notes=bool(args.midi_out), stride_length_s=args.stride)
        except Exception as error:  # one bad file is reported and the batch goes on
            errors.append((str(path), f"{type(error).__name__}: {error}"))
            continue
        scores = dict(sorted((entry["label"], entry["score"]) for entry in output["labels"]))  # Q1..Q4
        prediction = output["labels"][0]["label"]
        record = {"file": str(path), "prediction": prediction, "emotion": QUADRANT_NAMES[prediction].split(" ")[0],
                  "scores": scores, "num_notes": output["num_notes"]}  # fmt: skip
        if args.timeline:
            record["timeline"] = [
                {"start": round(w["start"], 3), "end": round(w["end"], 3), "prediction": w["labels"][0]["label"],
                 "scores": dict(sorted((e["label"], e["score"]) for e in w["labels"])), "num_notes": w["num_notes"]}  # fmt: skip
                for w in output["timeline"]
            ]
        if args.midi_out:
            from .notes_mdpiano import notes_to_midi

            midi_path = midi_paths[path]
            notes_to_midi(output["notes"]).write(str(midi_path))
            record["midi"] = str(midi_path)
        results.append(record)
    return results, errors


def format_table(results: list[dict], timeline: bool) -> str:
    quadrants = ["Q1", "Q2", "Q3", "Q4"]
    width = max([len(r["file"]) for r in results] + [4])
    lines = [f"{'file':<{width}}  prediction   " + "  ".join(f"{q:>5}" for q in quadrants) + "  notes"]
    for record in results:
        notes = "-" if record["num_notes"] is None else str(record["num_notes"])
        label = f"{record['prediction']} {record['emotion']}"
        lines.append(f"{record['file']:<{width}}  {label:<11}  " + "  ".join(f"{record['scores'][q]:5.2f}" for q in quadrants) + f"  {notes:>5}")
        if record["num_notes"] == 0:
            lines.append(f"{'':<{width}}  (no notes were found: the symbolic branch saw an empty transcription)")
        for window in record.get("timeline", []) if timeline else []:
            span = f"  {window['start']:7.1f}-{window['end']:.1f} s"
            notes = "-" if window["num_notes"] is None else str(window["num_notes"])
            lines.append(f"{span:<{width}}  {window['prediction']:<11}  " + "  ".join(f"{window['scores'][q]:5.2f}" for q in quadrants)
                         + f"  {notes:>5}")  # fmt: skip
    return "\n".join(lines) + "\n"


def format_json(results: list[dict], timeline: bool) -> str:
    return json.dumps(results, indent=1) + "\n"


def format_csv(results: list[dict], timeline: bool) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "start", "end", "prediction", "Q1", "Q2", "Q3", "Q4", "num_notes"])
    for record in results:
        rows = [(None, None, record["prediction"], record["scores"], record["num_notes"])]
        rows += [(w["start"], w["end"], w["prediction"], w["scores"], w["num_notes"]) for w in record.get("timeline", [])] if timeline else []
        for start, end, prediction, scores, num_notes in rows:
            writer.writerow([record["file"], start, end, prediction] + [f"{scores[q]:.4f}" for q in ("Q1", "Q2", "Q3", "Q4")]
                            + [num_notes])  # fmt: skip
    return buffer.getvalue()


def transcribe(args) -> int:
    from tqdm.auto import tqdm

    from .notes_mdpiano import notes_to_midi
    from .processing_mdpiano import MDPianoProcessor

    files, errors = expand_inputs(args.paths, AUDIO_EXTENSIONS)
    check_output_folder(args.out)
    processor = MDPianoProcessor.from_pretrained(args.model)
    targets = midi_output_paths(files, args.out)
    for path in tqdm(files, desc="Transcribing", unit="file", disable=args.quiet or len(files) < 2):
        try:
            (notes,) = processor.transcribe(str(path))
        except Exception as error:
            errors.append((str(path), f"{type(error).__name__}: {error}"))
            continue
        target = targets[path]
        notes_to_midi(notes).write(str(target))
        print(f"{path} -> {target} ({len(notes)} notes)")
    return report_errors(errors)


def exit_on_input_errors(main) -> None:
    """
    Runs a script's `main`: missing inputs (`FileNotFoundError`: data, SoundFonts, configs) and malformed data files
    end it with one `error:` line naming what to fix instead of a traceback; Ctrl-C ends it quietly.
    """
    from .emopia import EmopiaFormatError

    try:
        main()
    except (FileNotFoundError, EmopiaFormatError) as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        sys.exit("interrupted")


def report_errors(errors: list[tuple[str, str]]) -> int:
    for path, message in errors:
        print(f"error: {path}: {message}", file=sys.stderr)
    return 1 if errors else 0


def build_parser() -> argparse.ArgumentParser:
    from .checkpoints import DEFAULT_MODEL_DIR

    parser = argparse.ArgumentParser(prog="mdpiano", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    predict_parser = commands.add_parser("predict", help="emotion quadrant of recordings or MIDI files")
    predict_parser.add_argument("paths", nargs="+", help="audio or MIDI files, or folders of them")
    predict_parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR),
                                help="model folder or Hub id (default: the shipped model)")  # fmt: skip
    predict_parser.add_argument("--format", default="table", choices=["table", "json", "csv"])
    predict_parser.add_argument("--timeline", action="store_true", help="also the emotion of every analysis window")
    predict_parser.add_argument("--stride", type=positive_seconds, help="seconds between windows (default: one window)")
    predict_parser.add_argument("--midi-out", help="save each transcription as <DIR>/<name>.mid (names made unique)")
    predict_parser.add_argument("--output", "-o", help="write the results to this file instead of the screen")
    predict_parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    predict_parser.add_argument("--quiet", action="store_true", help="no progress bar")
    predict_parser.set_defaults(run=predict)
    transcribe_parser = commands.add_parser("transcribe", help="piano transcription to MIDI (basic-pitch)")
    transcribe_parser.add_argument("paths", nargs="+", help="audio files or folders of them")
    transcribe_parser.add_argument("--out", required=True, help="folder for the MIDI files")
    transcribe_parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="folder whose transcription settings to use")
    transcribe_parser.add_argument("--quiet", action="store_true", help="no progress bar")
    transcribe_parser.set_defaults(run=transcribe)
    return parser


def positive_seconds(text: str) -> float:
    seconds = float(text)
    if not seconds >= 0.1:
        raise argparse.ArgumentTypeError(f"must be at least 0.1 s, got {text}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "predict":
        check_output_file(args.output)
        if args.midi_out:
            check_output_folder(args.midi_out)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
