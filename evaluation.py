"""Evaluation of an mdpiano model on an EMOPIA split: clip-level predictions, metrics, figures and a JSON report."""

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from .caching import cache_dataset, write_atomic
from .notes_mdpiano import notes_to_array, read_midi_notes
from .pipeline_mdpiano import check_stride
from .plots import plot_confusion_matrix, plot_valence_arousal
from .training import WindowBatcher, check_clip_lengths, load_clips, predict_clips, quadrant_metrics


def clip_predictions(model, processor, dataset, cache_dir, set_name, mode="cached", symbolic_source="transcription",
                     num_proc=2, stride_s=None, batch_size=16) -> dict:  # fmt: skip
    """
    Clip-level predictions on a dataset with `clip_id`, `label`, `midi_path` and `audio` columns.

    Args:
        mode: `"pipeline"` runs `pipeline("audio-classification")` on every audio file (decoding, transcription,
            features, windows: the end-to-end path of a user); `"cached"` reads transcriptions and whole-clip features
            from the cache (computed once) and cuts the same windows.
        symbolic_source: `"transcription"` (basic-pitch on the audio, as at inference) or `"midi"` (the clip's
            ground-truth MIDI; cached mode only).
        stride_s: hop between windows; the pipeline's (one window) by default.

    Returns:
        dict with `probabilities` (clips, 4) and, in cached mode with auxiliary heads, `arousal` and `valence`.

    Raises:
        ValueError: a `stride_s` longer than the model's window (the audio between windows would go unanalysed),
            ground-truth MIDI asked of the pipeline, or clips too short for the model (named).
    """
    if stride_s is not None:
        check_stride(stride_s, processor.feature_extractor, "stride_s")
    if mode == "pipeline":
        if symbolic_source != "transcription":
            raise ValueError("The pipeline transcribes the audio: use mode='cached' for symbolic_source='midi'.")
        from transformers import pipeline

        from .emopia import QUADRANTS

        classify = pipeline("audio-classification", model=model, processor=processor)
        paths = [row["path"] for row in dataset.cast_column("audio", _undecoded())["audio"]]
        outputs = classify(paths, batch_size=batch_size, stride_length_s=stride_s)
        probabilities = np.array([[next(r["score"] for r in output if r["label"] == q) for q in QUADRANTS] for output in outputs])
        return {"probabilities": probabilities}
    use_acoustic = model.config.domains in ("both", "acoustic")
    cached = cache_dataset(dataset, processor, cache_dir, set_name, num_proc, with_features=use_acoustic)
    clips = load_clips(cached)
    check_clip_lengths(model.config, [clips])  # named together, before any prediction
    if symbolic_source == "midi":
        clips = [
            dataclasses.replace(clip, notes=notes_to_array(read_midi_notes(path)).astype(np.float32))
            for clip, path in zip(clips, dataset["midi_path"])
        ]
    elif symbolic_source != "transcription":
        raise ValueError(f"symbolic_source must be 'transcription' or 'midi', got {symbolic_source!r}.")
    return predict_clips(model, WindowBatcher(processor, use_acoustic), clips, stride_s, batch_size,
                         symbolic_source=symbolic_source)  # fmt: skip


def write_scaled_copies(source_dir, destination_dir, gain_db: float) -> Path:
    """
    Copies of the audio files of a folder (extensions of `emopia.AUDIO_EXTENSIONS`) with every sample scaled by
    `gain_db`, as float WAV at the file's own rate named `<stem>.wav`, so no level is lost to quantisation or clipped
    by a codec. Resumable as [`write_resampled_copies`]. Returns `destination_dir`.
    """
    gain = np.float32(10.0 ** (gain_db / 20.0))
    return _write_copies(source_dir, destination_dir, lambda waveform, rate: (waveform * gain, rate),
                         f"Scaling {Path(source_dir).name} by {gain_db:g} dB")  # fmt: skip


def write_resampled_copies(source_dir, destination_dir, sampling_rate: int) -> Path:
    """
    Copies of the audio files of a folder resampled to `sampling_rate` (soxr, high quality), as float WAV named
    `<stem>.wav`: what a recording made or stored at that rate holds (nothing above `sampling_rate / 2`). Each copy
    takes its source's modification time: a copy whose source has another (re-rendered, or replaced by an older
    file) is written again, the others are kept (resumable), and a copy whose source is gone is removed. Returns
    `destination_dir`.
    """
    import soxr

    def resample(waveform, rate):
        return (waveform if rate == sampling_rate else soxr.resample(waveform, rate, sampling_rate, quality="HQ")), sampling_rate

    return _write_copies(source_dir, destination_dir, resample, f"Resampling {Path(source_dir).name} to {sampling_rate} Hz")


def _write_copies(source_dir, destination_dir, transform, description: str) -> Path:
    """Writes `transform(waveform (samples, channels) float32, rate) -> (waveform, rate)` of each audio file of
    `source_dir` to `destination_dir/<stem>.wav` (float WAV), resumable by the sources' modification times."""
    import soundfile
    from tqdm.auto import tqdm

    from .emopia import AUDIO_EXTENSIONS

    source_dir, destination_dir = Path(source_dir), Path(destination_dir)
    sources = sorted(
        path for path in source_dir.iterdir() if path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")
    )
    if not sources:
        raise FileNotFoundError(f"No audio files in {source_dir}: render the set first (scripts/render_emopia.py).")
    destination_dir.mkdir(parents=True, exist_ok=True)
    stems = {source.stem for source in sources}
    for orphan in destination_dir.glob("*.wav"):
        if orphan.stem not in stems:
            orphan.unlink()
    for source in tqdm(sources, desc=description):
        destination = destination_dir / f"{source.stem}.wav"
        stamp = source.stat()
        if destination.exists() and destination.stat().st_mtime_ns == stamp.st_mtime_ns:
            continue
        waveform, rate = transform(*soundfile.read(source, dtype="float32", always_2d=True))
        write_atomic(destination, lambda file: soundfile.write(file, waveform, rate, subtype="FLOAT", format="WAV"))
        os.utime(destination, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    return destination_dir


def _undecoded():
    from datasets import Audio

    return Audio(decode=False)


def write_report(predictions: dict, dataset, output_dir, title: str, extra: dict | None = None) -> dict:
    """Metrics (the repository's `evaluate` module), `results.json` (with each clip's probabilities, and its
    auxiliary heads' where `predictions` holds them), `confusion_matrix.png` and `valence_arousal.png` in
    `output_dir`; returns the metrics."""
    from .emopia import QUADRANTS

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    labels = list(dataset["label"])
    metrics = quadrant_metrics(predictions, labels)
    per_clip = [
        {"clip_id": clip_id, "label": QUADRANTS[label], "prediction": QUADRANTS[int(np.argmax(p))],
         "probabilities": dict(zip(QUADRANTS, np.round(p, 4).tolist()))}  # fmt: skip
        for clip_id, label, p in zip(dataset["clip_id"], labels, predictions["probabilities"])
    ]
    for head in ("arousal", "valence"):  # the auxiliary heads' P(high arousal), P(positive valence): their accuracies' inputs
        for entry, probability in zip(per_clip, predictions.get(head, [])):
            entry[f"{head}_head"] = round(float(probability), 4)
    report = {"title": title, **(extra or {}), "metrics": metrics, "clips": per_clip}
    (output_dir / "results.json").write_text(json.dumps(report, indent=1))
    plot_confusion_matrix(metrics["confusion_matrix"], QUADRANTS, output_dir / "confusion_matrix.png",
                          f"{title}\n4Q accuracy {metrics['accuracy']:.3f}")  # fmt: skip
    plot_valence_arousal(predictions["probabilities"], labels, QUADRANTS, output_dir / "valence_arousal.png", title)
    return metrics


def metrics_table(metrics: dict) -> str:
    """A Markdown summary: the headline figures, then precision, recall and F1 per quadrant."""
    rows = ["| metric | value |", "|---|---|"]
    for name in ("accuracy", "macro_f1", "arousal_accuracy", "valence_accuracy", "arousal_head_accuracy", "valence_head_accuracy"):
        if name in metrics:
            rows.append(f"| {name.replace('_', ' ')} | {metrics[name]:.3f} |")
    rows += ["", "| quadrant | precision | recall | F1 | clips |", "|---|---|---|---|---|"]
    for name, scores in metrics["per_class"].items():
        rows.append(f"| {name} | {scores['precision']:.3f} | {scores['recall']:.3f} | {scores['f1']:.3f} | {scores['support']} |")
    return "\n".join(rows)


def _split_section(path: Path, name: str, yaml: bool) -> tuple[str, str, str, str, str]:
    """A document's text before the section's begin marker, the marker, the section, the end marker, and the rest."""
    text = path.read_text()
    begin, end = (f"# {name}:begin", f"# {name}:end") if yaml else (f"<!-- {name}:begin -->", f"<!-- {name}:end -->")
    if begin not in text or end not in text:
        raise ValueError(f"{path} has no {begin} ... {end} section to fill.")
    head, rest = text.split(begin, 1)
    section, tail = rest.split(end, 1)
    return head, begin, section, end, tail


def read_section(path, name: str, yaml: bool = False) -> str:
    """The text of a section written by [`replace_section`]."""
    return _split_section(Path(path), name, yaml)[2].strip()


def replace_section(path, name: str, content: str, yaml: bool = False) -> None:
    """
    Replaces the text between `<!-- name:begin -->` and `<!-- name:end -->` in a document (README, model card), or
    between `# name:begin` and `# name:end` lines in its YAML front matter when `yaml`.
    """
    head, begin, _, end, tail = _split_section(Path(path), name, yaml)
    Path(path).write_text(f"{head}{begin}\n{content.strip()}\n{end}{tail}")


def shown_path(path, root) -> str:
    """A path as a document shows it: relative to `root` (the repository) when inside it."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)


__all__ = [
    "clip_predictions",
    "metrics_table",
    "read_section",
    "replace_section",
    "shown_path",
    "write_report",
    "write_resampled_copies",
    "write_scaled_copies",
]
