"""
Cached clips (transcribed notes, unnormalised acoustic features, labels) packed into portable files, so a model can
be trained or evaluated on a machine that has neither the audio nor the caches, a rented GPU for instance.

An archive is a folder of `<set>-<index>.npz.xz` files (an lzma-compressed `.npz` each, a few hundred clips per file
so that every file stays small enough to move) and `archive.json`, which names the sets, the feature settings and how
the clips were made (`clip_source`: the transcription settings of their notes, the split scheme of their sets), all
checked when the archive is read or extended. "Mixed" features are stored without their MFCCs, which are the DCT of
the stored log-mel and are recomputed on loading with the feature extractor's own code: a third less to move, equal
to the cached values up to float16 rounding.
"""

import io
import json
import lzma
import zipfile
from pathlib import Path

import numpy as np

from .caching import FEATURE_SETTINGS, write_atomic
from .training import Clip
from .transcription_mdpiano import TRANSCRIPTION_VERSION

FORMAT_VERSION = 1


def write_npz_xz(path, arrays: dict[str, np.ndarray]) -> None:
    """Writes named arrays as an lzma-compressed `.npz` file."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    compressed = lzma.compress(buffer.getvalue(), preset=6)
    write_atomic(Path(path), lambda file: file.write(compressed))  # whole or not at all


def read_npz_xz(path) -> dict[str, np.ndarray]:
    """
    The arrays of a file written by [`write_npz_xz`].

    Raises:
        `ValueError` naming a file that is truncated or otherwise not such a file.
    """
    # Decompressed whole: the .npz inside is a zip file, read by seeking back and forth.
    try:
        with np.load(io.BytesIO(lzma.decompress(Path(path).read_bytes()))) as arrays:
            return {key: arrays[key] for key in arrays.files}
    except (lzma.LZMAError, zipfile.BadZipFile, EOFError, ValueError) as error:
        raise ValueError(f"{path} is damaged ({type(error).__name__}: {error}): write it again.") from error


def _feature_settings(feature_extractor) -> dict:
    """The settings that shape the features, as archive.json stores them."""
    return json.loads(json.dumps({name: getattr(feature_extractor, name) for name in FEATURE_SETTINGS}, default=str))


def clip_source(processor, split_scheme: str | None = None) -> dict:
    """What an archive's clips depend on beyond their features: the transcription settings of their notes, the level
    floor their recordings were read with and, when given, the EMOPIA split scheme their sets were drawn from."""
    transcription = {**processor.transcriber.to_dict(), "version": TRANSCRIPTION_VERSION}  # notes of older versions differ
    source = {"transcription_settings": transcription, "min_peak": processor.min_peak}
    return source if split_scheme is None else {**source, "split_scheme": split_scheme}


def _write_manifest(folder: Path, manifest: dict) -> None:
    text = json.dumps(manifest, indent=1, default=str).encode()
    write_atomic(folder / "archive.json", lambda file: file.write(text))  # whole or not at all


def _check_source(manifest: dict, source: dict | None, folder) -> None:
    """Refuses an archive whose clips were made otherwise than `source` says (what it does not record is unchecked:
    archives written before it recorded its source)."""
    for key, value in (source or {}).items():
        if key in manifest and manifest[key] != value:
            raise ValueError(f"The clip archive {folder} holds clips made with {key} {manifest[key]}, but this run "
                             f"uses {value}: export the archive again with these settings, or use its own.")  # fmt: skip


def _stored_channels(feature_extractor) -> np.ndarray:
    """Indices of the feature dimensions kept on disk: all but the MFCCs of mixed features."""
    keep = np.arange(feature_extractor.feature_size)
    if feature_extractor.feature_type == "mixed":
        n_mels = feature_extractor.n_mels
        keep = np.concatenate([keep[:n_mels], keep[n_mels + feature_extractor.n_mfcc :]])
    return keep


def _pack(clips: list[Clip], feature_extractor) -> dict[str, np.ndarray]:
    arrays = {
        "clip_id": np.array([clip.clip_id for clip in clips]),
        "label": np.array([clip.label for clip in clips], dtype=np.int64),
        "duration": np.array([clip.duration for clip in clips], dtype=np.float64),
        # the audio files' own rates (NaN: not known), for the fusion's weight for band-limited recordings
        "source_sampling_rate": np.array([np.nan if clip.source_sampling_rate is None else clip.source_sampling_rate
                                          for clip in clips], dtype=np.float64),  # fmt: skip
        "note_offsets": np.cumsum([0] + [len(clip.notes) for clip in clips]),
        "notes": np.concatenate([clip.notes.reshape(-1, 4) for clip in clips]).astype(np.float32),
    }
    if all(clip.features is not None for clip in clips):
        keep = _stored_channels(feature_extractor)
        arrays["frame_offsets"] = np.cumsum([0] + [len(clip.features) for clip in clips])
        # Channel-major: each channel is a smooth time series, which compresses better than interleaved frames.
        arrays["features"] = np.concatenate([clip.features[:, keep].T for clip in clips], axis=1).astype(np.float16)
    return arrays


def _unpack(arrays, feature_extractor) -> list[Clip]:
    features = [None] * len(arrays["clip_id"])
    if "features" in arrays:
        stored, offsets = arrays["features"], arrays["frame_offsets"]
        features = []
        for first, last in zip(offsets[:-1], offsets[1:]):
            channels = stored[:, first:last].astype(np.float32)
            if feature_extractor.feature_type == "mixed":
                log_mel = channels[: feature_extractor.n_mels]
                mfcc = feature_extractor.mfcc_from_log_mel(log_mel) if last > first else np.zeros((feature_extractor.n_mfcc, 0))  # fmt: skip
                channels = np.concatenate([log_mel, mfcc, channels[feature_extractor.n_mels :]])
            features.append(channels.T.astype(np.float16))
    note_offsets = arrays["note_offsets"]
    # archives written before they held the rates: not known
    rates = arrays.get("source_sampling_rate", np.full(len(arrays["clip_id"]), np.nan))
    return [
        Clip(str(clip_id), int(label), arrays["notes"][first:last], clip_features, float(duration),
             None if np.isnan(rate) else float(rate))  # fmt: skip
        for clip_id, label, duration, first, last, clip_features, rate in zip(
            arrays["clip_id"], arrays["label"], arrays["duration"], note_offsets[:-1], note_offsets[1:], features, rates
        )
    ]


def archive_manifest(folder, feature_extractor, source: dict | None = None) -> dict:
    """
    The manifest that writing into `folder` extends: its archive's, whose sets stay, or a new one. Check it before
    caching anything: clips of other feature settings, or another `source` ([`clip_source`]), cannot join an archive.

    Raises:
        `ValueError` when the folder holds an archive of other feature settings or source.
    """
    folder = Path(folder)
    settings = _feature_settings(feature_extractor)
    if not (folder / "archive.json").is_file():
        return {"format_version": FORMAT_VERSION, "feature_settings": settings, **(source or {}), "sets": {}}
    manifest = json.loads((folder / "archive.json").read_text())
    if manifest["feature_settings"] != settings:
        raise ValueError(f"{folder} holds clips with other feature settings ({manifest['feature_settings']}); "
                         "write this archive into another folder.")  # fmt: skip
    _check_source(manifest, source, folder)
    return manifest


def write_clip_archive(folder, sets: dict[str, list[Clip]], feature_extractor, clips_per_file: int = 200,
                       source: dict | None = None) -> list[Path]:  # fmt: skip
    """
    Writes the clips of each named set (e.g. `{"train-0": [...], "validation": [...]}`) into `folder`, at most
    `clips_per_file` clips per file. Features are those of `feature_extractor`'s settings, and the clips were made as
    `source` ([`clip_source`]) says (both recorded, and checked when reading). Sets already in the folder's archive
    stay, unless rewritten.

    Returns:
        the files written, `archive.json` first.
    """
    from tqdm.auto import tqdm

    folder = Path(folder)
    manifest = archive_manifest(folder, feature_extractor, source)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "archive.json"]
    if empty := [name for name, clips in sets.items() if not clips]:
        raise ValueError(f"Set {empty[0]!r} has no clips to archive.")
    # A set being rewritten leaves the manifest first: an interrupted run leaves it missing, not old and new mixed.
    if rewritten := [name for name in sets if name in manifest["sets"]]:
        for name in rewritten:
            del manifest["sets"][name]
        _write_manifest(folder, manifest)
    for name, clips in sets.items():
        files = []
        for first in tqdm(range(0, len(clips), clips_per_file), desc=f"Archiving {name}"):
            path = folder / f"{name}-{first // clips_per_file:03d}.npz.xz"
            write_npz_xz(path, _pack(clips[first : first + clips_per_file], feature_extractor))
            files.append(path.name)
        manifest["sets"][name] = {"clips": len(clips), "files": files}
        written += [folder / f for f in files]
    _write_manifest(folder, manifest)
    return written


def read_clip_archive(folder, set_name: str, feature_extractor, source: dict | None = None) -> list[Clip]:
    """
    The clips of one set of an archive written by [`write_clip_archive`], with whole-clip features of the
    archive's settings, which must be `feature_extractor`'s, and made as `source` ([`clip_source`]) says.

    Raises:
        `ValueError` when the archive lacks the set or a file of it, or was written with other feature settings or
        another source.
    """
    folder = Path(folder)
    manifest_path = folder / "archive.json"
    if not manifest_path.is_file():
        raise ValueError(f"{folder} is not a clip archive (no archive.json); write one with scripts/export_clips.py.")
    manifest = json.loads(manifest_path.read_text())
    if set_name not in manifest["sets"]:
        raise ValueError(f"The clip archive {folder} has no set {set_name!r}; it holds {sorted(manifest['sets'])}.")
    expected = _feature_settings(feature_extractor)
    if manifest["feature_settings"] != expected:
        raise ValueError(
            f"The clip archive {folder} holds features computed with {manifest['feature_settings']}, but the model's "
            f"feature extractor uses {expected}: export the archive again with this model's settings."
        )
    _check_source(manifest, source, folder)
    entry = manifest["sets"][set_name]
    missing = [name for name in entry["files"] if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"The clip archive {folder} misses {len(missing)} file(s) of set {set_name!r}: {missing}.")
    clips = []
    for name in entry["files"]:
        clips += _unpack(read_npz_xz(folder / name), feature_extractor)
    if len(clips) != entry["clips"]:
        raise ValueError(f"Set {set_name!r} of {folder} should hold {entry['clips']} clips, its files hold {len(clips)}.")
    return clips


__all__ = ["archive_manifest", "clip_source", "read_clip_archive", "read_npz_xz", "write_clip_archive", "write_npz_xz"]
