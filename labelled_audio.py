"""A user's own labelled audio as a `datasets.Dataset`: a folder with one sub-folder per quadrant, or a CSV file."""

import csv
import logging
from pathlib import Path

from .emopia import AUDIO_EXTENSIONS, QUADRANTS, EmopiaFormatError, dataset_with_audio_paths
from .configuration_mdpiano import QUADRANT_AROUSAL, QUADRANT_VALENCE

logger = logging.getLogger(__name__)
# Besides Q1..Q4, a folder or label may use the quadrant's emotion word.
LABEL_ALIASES = {"q1": "Q1", "happy": "Q1", "q2": "Q2", "tense": "Q2", "q3": "Q3", "sad": "Q3", "q4": "Q4", "calm": "Q4"}


def _quadrant(label: str, where: str) -> str:
    quadrant = LABEL_ALIASES.get(str(label).strip().lower())
    if quadrant is None:
        raise EmopiaFormatError(f"{where}: unknown label {label!r}; use Q1-Q4 (or happy, tense, sad, calm).")
    return quadrant


def load_labelled_audio(source, sampling_rate: int | None = None):
    """
    A labelled audio collection as a `datasets.Dataset` with `clip_id`, `label` (`ClassLabel` Q1-Q4), `arousal`,
    `valence` and `audio` (`datasets.Audio`).

    Args:
        source: a folder with sub-folders `Q1` ... `Q4` (or `happy`, `tense`, `sad`, `calm`) holding audio files
            (wav, flac, mp3, ogg, m4a, opus), or a CSV file with columns `path` and `label` (paths relative to the
            CSV's folder or absolute).
        sampling_rate: decode audio at this rate.

    Rows whose file is missing are left out with a warning naming them; unknown labels are an error.
    """
    from datasets import ClassLabel, Value

    source = Path(source)
    entries, missing = [], []
    if source.is_dir():
        for folder in sorted(p for p in source.iterdir() if p.is_dir()):
            quadrant = _quadrant(folder.name, str(folder))
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() in AUDIO_EXTENSIONS:
                    entries.append((str(path.relative_to(source).with_suffix("")), quadrant, str(path)))
    elif source.is_file():
        with open(source, newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            if not {"path", "label"} <= set(reader.fieldnames or []):
                raise EmopiaFormatError(f"{source} needs the columns path and label; its header is {reader.fieldnames}.")
            for line, row in enumerate(reader, start=2):
                path = Path(row["path"]) if Path(row["path"]).is_absolute() else source.parent / row["path"]
                if not path.is_file():
                    missing.append(str(path))
                    continue
                entries.append((row.get("clip_id") or str(Path(row["path"]).with_suffix("")), _quadrant(row["label"], f"{source}, line {line}"), str(path)))
    else:
        raise FileNotFoundError(f"Labelled audio not found: {source} (a folder of Q1-Q4 sub-folders, or a CSV file).")
    if missing:
        logger.warning("%s: %d listed files are missing and left out: %s", source, len(missing), ", ".join(missing[:10]))
    if not entries:
        raise ValueError(f"No labelled audio found in {source}.")
    # Cache entries are named by clip id: keep ids unique and free of path separators.
    clip_ids = [clip_id.replace("/", "__") for clip_id, _, _ in entries]
    if len(set(clip_ids)) != len(clip_ids):
        raise ValueError(f"{source}: clip ids (file names) must be unique.")
    features = {"clip_id": Value("string"), "label": ClassLabel(names=QUADRANTS), "arousal": Value("int8"),
                "valence": Value("int8")}  # fmt: skip
    rows = {
        "clip_id": clip_ids,
        "label": [QUADRANTS.index(q) for _, q, _ in entries],
        "arousal": [QUADRANT_AROUSAL[q] for _, q, _ in entries],
        "valence": [QUADRANT_VALENCE[q] for _, q, _ in entries],
        "audio": [path for _, _, path in entries],
    }
    return dataset_with_audio_paths(rows, features, sampling_rate)


__all__ = ["load_labelled_audio"]
