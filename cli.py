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
import tempfile
from collections import Counter
from pathlib import Path

from .emopia import AUDIO_EXTENSIONS as AUDIO_SUFFIXES
from .pipeline_mdpiano import MIDI_SUFFIXES

AUDIO_EXTENSIONS, MIDI_EXTENSIONS = set(AUDIO_SUFFIXES), set(MIDI_SUFFIXES)
MAX_STRIDE_S = 24 * 3600  # longer than any recording; strides near 1e308 s overflow the window arithmetic


def expand_inputs(
    paths: list[str], extensions: set[str] = AUDIO_EXTENSIONS | MIDI_EXTENSIONS, skip: str | None = None
) -> tuple[list[Path], list[tuple[str, str]]]:
    """
    Files to process, each once (folders expanded to their files with these extensions, recursively, sorted, leaving
    out the output folder `skip`), and errors for paths that do not exist or that need no processing.
    """
    files, errors = [], []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = scan_folder(path, extensions, skip)
            if not found:
                errors.append((text, f"folder holds no {'audio or MIDI' if MIDI_EXTENSIONS <= extensions else 'audio'} files"))
            files += found
        elif not path.exists():
            errors.append((text, "file or folder not found"))
        elif path.suffix.lower() in MIDI_EXTENSIONS - extensions:
            errors.append((text, "is a MIDI file already: it needs no transcription"))
        else:
            files.append(path)
    unique = {}
    for path in files:
        unique.setdefault(path.resolve(), path)  # `in/a.wav ./in/a.wav` name one file: it is processed once
    return list(unique.values()), errors


def scan_folder(folder: Path, extensions: set[str], skip: str | None = None) -> list[Path]:
    """
    The files with these extensions below a folder, sorted. Hidden files and folders (macOS's `._x.wav` resource forks,
    `.git`) are left out, and so is the output folder `skip` inside it: an earlier run's transcriptions are not inputs.
    """
    skip_path = Path(skip).resolve() if skip else None
    found = []
    for root, folders, names in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".") and Path(root, name).resolve() != skip_path]
        names = [name for name in names if not name.startswith(".") and Path(name).suffix.lower() in extensions]
        found += [Path(root, name) for name in names]
    return sorted(path for path in found if path.is_file())


def midi_output_paths(files: list[Path], out_dir: str, reserved: tuple[str, ...] = ()) -> dict[Path, Path]:
    """
    Where each input's transcription is written: `<out_dir>/<stem>.mid`, or, where stems collide or that name is one
    of the inputs or `reserved` (the results file), a name made of the input's path below the inputs' common folder
    (`d1__x.wav.mid`); should that be taken too (by an input, a reserved file or another output), `-2`, `-3`, ... is
    added: no output overwrites an input, the results or another output.
    """
    if not files:
        return {}
    resolved = {path: path.resolve() for path in files}
    common = Path(os.path.commonpath([str(path.parent) for path in resolved.values()]))
    stems = Counter(path.stem for path in files)
    taken = set(resolved.values()) | {Path(path).resolve() for path in reserved}
    targets = {}
    for path in files:
        name = f"{path.stem}.mid"
        if stems[path.stem] > 1 or (Path(out_dir) / name).resolve() in taken:
            name = "__".join(resolved[path].relative_to(common).parts) + ".mid"
        target, copy = Path(out_dir) / name, 1
        while target.resolve() in taken:
            copy += 1
            target = Path(out_dir) / f"{Path(name).stem}-{copy}.mid"
        targets[path] = target
        taken.add(target.resolve())
    return targets


def check_output_file(path: str | None, inputs: list[Path]) -> None:
    """Refuses, before any work, an output file that is a folder, cannot be written or is one of the inputs."""
    if not path:
        return
    target = Path(path)
    if path.endswith(("/", os.sep)) or target.is_dir():
        raise SystemExit(f"error: -o {path} is a folder; give a file name (results.json).")
    if not target.resolve().parent.is_dir():
        raise SystemExit(f"error: cannot write {path}: its folder does not exist.")
    if target.resolve() in {file.resolve() for file in inputs}:
        raise SystemExit(f"error: -o {path} is one of the inputs; give another file name.")
    existed = target.exists()
    try:
        open(target, "a").close()  # appending nothing leaves an existing file as it is
    except OSError as error:
        raise SystemExit(f"error: cannot write {path}: {error.strerror or error}") from error
    if not existed:
        target.unlink()


def check_output_folder(path: str) -> None:
    """Creates an output folder, or refuses one that is a file, cannot be created or cannot be written to."""
    if Path(path).exists() and not Path(path).is_dir():
        raise SystemExit(f"error: {path} is a file; give a folder for the MIDI files.")
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as error:
        raise SystemExit(f"error: cannot write MIDI files to {path}: {error.strerror or error}") from error


def check_model_dir(model_dir: str, pattern: str, files: str) -> None:
    """Refuses a --model that is neither a folder nor a Hub id, or a folder without the files (`pattern`) needed."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if Path(model_dir).is_dir():
        if not any(Path(model_dir).glob(pattern)):
            raise SystemExit(f"error: {model_dir} holds no {files}; pass --model <trained folder>.")
        return
    try:
        validate_repo_id(model_dir)
    except HFValidationError:
        raise SystemExit(f"error: --model {model_dir}: no such folder.") from None


def load_pipeline(model_dir: str, device: str):
    from transformers import pipeline
    from transformers.utils import logging

    import mdpiano  # noqa: F401  (registers the mdpiano pipeline and Auto classes)

    from .checkpoints import load_model_or_exit

    logging.disable_progress_bar()  # the weight-loading bar; the command shows its own per file

    check_model_dir(model_dir, "*.safetensors", "model weights (model.safetensors)")
    check_model_dir(model_dir, "*processor_config.json", "processor settings (processor_config.json)")
    model, processor = load_model_or_exit(model_dir)
    try:
        return pipeline("audio-classification", model=model, processor=processor, device=device)
    except (AssertionError, RuntimeError) as error:  # e.g. --device cuda with a CPU-only torch
        raise SystemExit(f"error: cannot run the model on --device {device}: {error}") from error


def load_processor(model_dir: str):
    from .checkpoints import load_error_message
    from .processing_mdpiano import MDPianoProcessor

    check_model_dir(model_dir, "*processor_config.json", "processor settings (processor_config.json)")
    try:
        return MDPianoProcessor.from_pretrained(model_dir)
    except (OSError, ValueError) as error:  # a Hub id that cannot be downloaded, invalid settings
        raise SystemExit(load_error_message("--model", model_dir, error)) from error


def write_midi(notes: list, source: Path, target: Path, errors: list[tuple[str, str]]) -> bool:
    """Writes a transcription; a failure (a folder of that name, a full disk) is reported and the batch goes on."""
    from .notes_mdpiano import notes_to_midi

    try:
        notes_to_midi(notes).write(str(target))
    except OSError as error:
        errors.append((str(source), f"cannot write {target}: {error.strerror or error}"))
        return False
    return True


def predict(args) -> int:
    files, errors = expand_inputs(args.paths, skip=args.midi_out)
    if not files:
        return report_errors(errors)
    check_output_file(args.output, files)
    if args.midi_out:
        check_output_folder(args.midi_out)
        out = Path(args.midi_out).resolve()
        scanned = [text for text in args.paths if Path(text).is_dir() and Path(text).resolve() == out]
        if scanned:  # its transcriptions would be read as inputs by the next run, and named after them
            raise SystemExit(f"error: --midi-out {args.midi_out} is a folder being classified ({scanned[0]}): its MIDI "
                             "files would be inputs of the next run; give another folder (a sub-folder is left out).")  # fmt: skip
    # Libraries print notices on stdout (pyfluidsynth does when `CI` is set); the JSON/CSV there must stay parseable.
    with contextlib.redirect_stdout(sys.stderr):
        results = classify_files(files, args, errors)
    text = {"table": format_table, "json": format_json, "csv": format_csv}[args.format](results, args.timeline)
    return max(write_results(text, args.output), report_errors(errors))


def write_results(text: str, output: str | None) -> int:
    """Writes the results to `output` or the screen; to the screen when the file cannot be written (a full disk)."""
    if not output:
        sys.stdout.write(text)
        return 0
    try:
        Path(output).write_text(text)
    except OSError as error:  # checked before the work, so rare; the results are not lost
        print(f"error: cannot write {output}: {error.strerror or error}; the results follow.", file=sys.stderr)
        sys.stdout.write(text)
        return 1
    return 0


def classify_files(files: list[Path], args, errors: list[tuple[str, str]]) -> list[dict]:
    """One result record per file that could be classified; (path, message) added to `errors` for the others."""
    from tqdm.auto import tqdm

    from .configuration_mdpiano import QUADRANT_NAMES
    from .pipeline_mdpiano import check_stride

    classifier = load_pipeline(args.model, args.device)
    if args.midi_out and not classifier.uses_symbolic:
        raise SystemExit(f"error: --midi-out: {args.model} reads no notes (domains='{classifier.model.config.domains}'), "
                         "so nothing is transcribed; `mdpiano transcribe` writes transcriptions with any model.")  # fmt: skip
    if args.stride is not None:  # refused once, before any file, rather than for each
        try:
            check_stride(args.stride, classifier.feature_extractor, "--stride")
        except ValueError as error:
            raise SystemExit(f"error: {error}") from error
    if args.midi_out:
        midi_paths = midi_output_paths(files, args.midi_out, reserved=(args.output,) if args.output else ())
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
                 "emotion": QUADRANT_NAMES[w["labels"][0]["label"]].split(" ")[0],
                 "scores": dict(sorted((e["label"], e["score"]) for e in w["labels"])), "num_notes": w["num_notes"]}  # fmt: skip
                for w in output["timeline"]
            ]
        if args.midi_out and write_midi(output["notes"], path, midi_paths[path], errors):
            record["midi"] = str(midi_paths[path])
        results.append(record)
    return results


def format_table(results: list[dict], timeline: bool) -> str:
    quadrants = ["Q1", "Q2", "Q3", "Q4"]
    spans = [window_span(w) for r in results for w in r.get("timeline", [])] if timeline else []
    width = max([len(r["file"]) for r in results] + [len(span) for span in spans] + [4])
    lines = [f"{'file':<{width}}  prediction   " + "  ".join(f"{q:>5}" for q in quadrants) + "  notes"]
    for record in results:
        notes = "-" if record["num_notes"] is None else str(record["num_notes"])
        label = f"{record['prediction']} {record['emotion']}"
        lines.append(f"{record['file']:<{width}}  {label:<11}  " + "  ".join(f"{record['scores'][q]:5.2f}" for q in quadrants) + f"  {notes:>5}")
        if record["num_notes"] == 0:
            lines.append(f"{'':<{width}}  (no notes were found: the symbolic branch saw an empty transcription)")
        for window in record.get("timeline", []) if timeline else []:
            notes = "-" if window["num_notes"] is None else str(window["num_notes"])
            label = f"{window['prediction']} {window['emotion']}"
            lines.append(f"{window_span(window):<{width}}  {label:<11}  " + "  ".join(f"{window['scores'][q]:5.2f}" for q in quadrants)
                         + f"  {notes:>5}")  # fmt: skip
    if timeline and any(record.get("timeline") for record in results):  # a file's row is not the mean of the rows below it
        lines.append("(window rows: each window as the network alone reads it; a file's row averages its windows with "
                     "notes, and weighs in its notes' statistics where the model fuses them)")  # fmt: skip
    return "\n".join(lines) + "\n"


def window_span(window: dict) -> str:
    return f"  {window['start']:7.1f}-{window['end']:.1f} s"


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

    files, errors = expand_inputs(args.paths, AUDIO_EXTENSIONS, skip=args.out)
    if not files:
        return report_errors(errors)
    check_output_folder(args.out)
    processor = load_processor(args.model)
    targets = midi_output_paths(files, args.out)
    for path in tqdm(files, desc="Transcribing", unit="file", disable=args.quiet or len(files) < 2):
        try:
            (notes,) = processor.transcribe(str(path))
        except Exception as error:
            errors.append((str(path), f"{type(error).__name__}: {error}"))
            continue
        if write_midi(notes, path, targets[path], errors):
            print(f"{path} -> {targets[path]} ({len(notes)} notes)")
    return report_errors(errors)


def exit_on_input_errors(main):
    """
    Runs a script's `main` and returns what it returns: missing inputs (`FileNotFoundError`: data, SoundFonts, configs)
    and malformed data files end it with one `error:` line naming what to fix instead of a traceback; Ctrl-C ends it
    with one line and status 130, as shells report an interrupted command.
    """
    from .emopia import EmopiaFormatError

    try:
        return main()
    except (FileNotFoundError, EmopiaFormatError) as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        end_progress_bars()
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def end_progress_bars() -> None:
    """Closes the progress bars still open, each ending its line, so that a message printed next gets a line of its
    own: an interrupt unwinds past a bar (a `for` over it, or one being drawn) before anything closes it."""
    from tqdm import tqdm

    for bar in list(tqdm._instances):  # the live bars, as tqdm's own `tqdm.write` finds them
        # interrupted between drawing itself and finishing its construction, a bar's close() leaves its line open
        half_built = getattr(bar, "sp", None) is not None and not hasattr(bar, "last_print_t")
        bar.close()
        if half_built:
            bar.fp.write("\n")


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
    predict_parser.add_argument("--stride", type=positive_seconds,
                                help="seconds between windows, at most one window (default: one window: 10 s for the default model)")  # fmt: skip
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
    """`--stride`: a number of seconds, from 0.1 to a day."""
    try:
        seconds = float(text)
    except ValueError:  # argparse's own message would name this function
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0.1 <= seconds <= MAX_STRIDE_S:  # also refuses inf and nan
        raise argparse.ArgumentTypeError(f"must be at least 0.1 s and at most {MAX_STRIDE_S} s, got {text}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_on_input_errors(lambda: args.run(args))


if __name__ == "__main__":
    sys.exit(main())
