"""Transcriptions and acoustic features of whole clips, computed once and kept on disk.

Training crops windows from whole-clip features and notes, so the expensive parts (basic-pitch transcription, the
STFT) run once per audio file. Each clip gets one file of notes and one of features, under folders named by a hash
of the settings that shape them, so a rerun with the same inputs only reads files, an interrupted run resumes, and
changed settings never reuse stale results. Each entry records the name, size and modification time of the audio
it was computed from: an audio file that differs in any (re-rendered, edited, replaced by an older copy, or another
file given the clip's id) is computed again.
"""

import hashlib
import json
import os
import uuid
import zipfile
from pathlib import Path

import numpy as np

from .audio_mdpiano import AudioDecodeError, source_sampling_rate, stream_audio
from .transcription_mdpiano import TRANSCRIPTION_VERSION, MDPianoTranscriber, transcription_model_identity

FEATURE_SETTINGS = ("sampling_rate", "n_fft", "hop_length", "n_mels", "n_mfcc", "fmin", "fmax", "feature_type")


def _digest(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cache_folders(cache_dir, processor, name: str) -> tuple[Path, Path]:
    """
    Where the transcriptions and the features of one audio set (e.g. `train-0`) live: folders named by a hash of
    the transcription settings and of the feature settings, each with the processor's level floor (`min_peak`);
    a model variant with other features reuses the transcriptions.
    """
    fe = processor.feature_extractor
    transcription_settings = {**processor.transcriber.to_dict(), "sampling_rate": fe.sampling_rate,
                              "transcription_version": TRANSCRIPTION_VERSION}  # fmt: skip
    model = transcription_model_identity(processor.transcriber.model_path)
    if model is not None:  # another transcription model than basic-pitch's (whose caches keep their key)
        transcription_settings["transcription_model_sha1"] = model
    feature_settings = {name: getattr(fe, name) for name in FEATURE_SETTINGS}
    # Both domains read the recording after the level floor raised it: caches made with another floor (or none,
    # as before it existed) differ for quiet recordings.
    transcription_settings["min_peak"] = feature_settings["min_peak"] = processor.min_peak
    transcription_key = _digest(transcription_settings)
    feature_key = _digest(feature_settings)
    root = Path(cache_dir)
    return root / "transcriptions" / transcription_key / name, root / "features" / feature_key / name


def source_cache_name(prefix: str, source) -> str:
    """Cache set name of audio given by location (a user's folder or CSV): unique per resolved path, e.g. `user-1a2b...`."""
    return f"{prefix}-" + hashlib.sha1(str(Path(source).resolve()).encode()).hexdigest()[:10]


# File names hold at most 255 bytes on common file systems; an entry's name (an id, then ".npz") is kept within that.
MAX_ENTRY_STEM_BYTES = 255 - len(".npz")


def entry_name(clip_id: str) -> str:
    """
    The file name of a clip's cache entry: `<clip_id>.npz`, or, for an id too long for a file name (a clip id built
    from a deep path, or given in a CSV), the start of the id and a hash of the whole, so each id keeps a file of its
    own. Ids short enough keep the names their entries always had.
    """
    if len(clip_id.encode()) <= MAX_ENTRY_STEM_BYTES:
        return f"{clip_id}.npz"
    digest = hashlib.sha1(clip_id.encode()).hexdigest()[:16]
    return f"{_cut(clip_id, MAX_ENTRY_STEM_BYTES - len(digest) - 1)}-{digest}.npz"


def _cut(text: str, size: int) -> str:
    """`text` cut to at most `size` bytes of UTF-8, never inside a character."""
    return text.encode()[:size].decode(errors="ignore")


def load_entry(notes_path, features_path=None) -> dict:
    """`notes` (N, 4) float32 and `duration` from a transcription file, and `features` (frames, F) float16."""
    with np.load(notes_path) as data:
        entry = {"notes": data["notes"], "duration": float(data["duration"])}
    if features_path is not None:
        with np.load(features_path) as data:
            entry["features"] = data["features"]
    return entry


def recorded_rate(notes_path) -> float | None:
    """The audio file's own sampling rate as a transcription entry records it (`None` in entries made before)."""
    with np.load(notes_path) as entry:
        return float(entry["source_sampling_rate"]) if "source_sampling_rate" in entry.files else None


def source_stamp(path) -> dict[str, int | str]:
    """
    What an entry records of its audio file, and is checked against: its name, size and modification time. Any
    difference makes the entry stale, so a file replaced by an older one (`cp -p`, `rsync -a`, unzip) is computed
    again, as an edited one is, and so is a clip id given another file of the same size and time (a CSV edited to
    point elsewhere); cheap, as nothing is read. The folder is not recorded: a cache moved with its audio stays
    valid.
    """
    stat = os.stat(path)
    return {"source_name": os.path.basename(path), "source_size": stat.st_size, "source_mtime_ns": stat.st_mtime_ns}


# Recorded since a later version: entries without it are checked by the other fields (not all computed again).
LATER_STAMP_FIELDS = ("source_name",)


def is_current(entry_path: Path, stamp: dict[str, int | str]) -> bool:
    """Whether an entry exists and was computed from the audio file `stamp` describes (entries written before
    entries recorded their audio are not, and are computed again)."""
    if not entry_path.exists():
        return False
    try:
        with np.load(entry_path) as entry:
            return all(
                entry[key].item() == value if key in entry.files else key in LATER_STAMP_FIELDS
                for key, value in stamp.items()
            )
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # damaged (a full disk, a copy cut short): recompute
        return False


def cache_dataset(dataset, processor, cache_dir, name: str, num_proc: int = 1, with_features: bool = True):
    """
    Adds `notes_path` (an `.npz` with the whole clip's `notes`, `duration` and the audio file's own sampling rate),
    `source_sampling_rate` (that rate) and, with `with_features`, `features_path` (an `.npz` with its unnormalised
    (frames, F) float16 `features`) to every row of a dataset with an `audio` column. Entries not on disk yet, or
    computed from an audio file of another size or modification time, are computed (`datasets.map` over `num_proc`
    processes, each running the transcriber on one thread); each audio file is decoded once.

    Raises:
        AudioDecodeError: naming every file that could not be decoded or holds unusable audio (no samples, NaN), and
            why, once all the others are cached.
    """
    from datasets import Audio

    notes_dir, features_dir = cache_folders(cache_dir, processor, name)
    notes_dir.mkdir(parents=True, exist_ok=True)
    transcription_settings = json.dumps(processor.transcriber.to_dict(), indent=1).encode()
    write_atomic(notes_dir / "settings.json", lambda f: f.write(transcription_settings))
    if with_features:
        features_dir.mkdir(parents=True, exist_ok=True)
        feature_settings = json.dumps(processor.feature_extractor.to_dict(), indent=1, default=str).encode()
        write_atomic(features_dir / "settings.json", lambda f: f.write(feature_settings))
    transcriber = MDPianoTranscriber(**processor.transcriber.to_dict(), model_path=processor.transcriber.model_path,
                                     num_threads=1 if num_proc > 1 else 0)  # fmt: skip

    def add_entry(row):
        path = row["audio"]["path"]
        notes_path = notes_dir / entry_name(row["clip_id"])
        features_path = features_dir / entry_name(row["clip_id"])
        stamp = source_stamp(path)
        need_notes = not is_current(notes_path, stamp)
        need_features = with_features and not is_current(features_path, stamp)
        try:
            if need_notes or need_features:
                stream = stream_audio(path, None, processor.sampling_rate, min_peak=processor.min_peak)
                waveform, rate = np.concatenate(list(stream)), stream.source_sampling_rate
            else:  # recorded in the entry; entries written before it was are asked of the file's header
                rate = recorded_rate(notes_path) or source_sampling_rate(path)
        except ValueError as error:  # reported with the others once the whole set is done
            # A decode error names the file; one about the decoded audio (no samples, NaN) does not.
            message = str(error) if isinstance(error, AudioDecodeError) else f"{path}: {error}"
            return {"notes_path": "", "features_path": "", "source_sampling_rate": 0.0, "error": message}
        if need_notes or need_features:
            if need_notes:
                notes = np.array(transcriber(waveform, processor.sampling_rate), dtype=np.float32).reshape(-1, 4)
                duration = len(waveform) / processor.sampling_rate
                write_atomic(notes_path, lambda f: np.savez(f, notes=notes, duration=duration, source_sampling_rate=rate, **stamp))
            if need_features:
                features = processor.feature_extractor.extract(waveform, normalize=False).astype(np.float16)
                write_atomic(features_path, lambda f: np.savez(f, features=features, **stamp))
                features_path.with_suffix(".npy").unlink(missing_ok=True)  # the entry's form before it had a stamp
        return {"notes_path": str(notes_path), "features_path": str(features_path) if with_features else "",
                "source_sampling_rate": float(rate), "error": ""}  # fmt: skip

    undecoded = dataset.cast_column("audio", Audio(decode=False))
    cached = undecoded.map(add_entry, num_proc=num_proc if num_proc > 1 else None, desc=f"Caching {name}",
                           load_from_cache_file=False)  # fmt: skip
    failures = [error for error in cached["error"] if error]
    if failures:
        # Named by the folder holding the audio: the set's name is a hash for a user's folder or CSV.
        folder = os.path.commonpath([os.path.dirname(os.path.abspath(row["path"])) for row in cached["audio"]])
        raise AudioDecodeError(
            f"{len(failures)} of {len(cached)} audio files in {folder} could not be used (the others are cached; "
            f"fix or remove these and run again): " + " | ".join(failures)
        )
    return cached.remove_columns(["error"] + ([] if with_features else ["features_path"]))


def write_atomic(path: Path, write) -> None:
    """
    Writes through a temporary file of this writer's own, so an interrupted run never leaves a truncated entry behind
    and two runs caching the same set at once (e.g. ablation variants started side by side) never write into one
    file: each replaces the entry whole, with the same content. The temporary name starts with (at most 200 bytes of)
    the entry's, so it stays a valid file name for any entry's.
    """
    partial = path.with_name(f"{_cut(path.name, 200)}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    try:
        with open(partial, "xb") as file:
            write(file)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


__all__ = ["cache_dataset", "cache_folders", "entry_name", "is_current", "load_entry", "source_cache_name", "source_stamp", "write_atomic"]
