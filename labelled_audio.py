"""A user's own labelled audio as a `datasets.Dataset`: a folder with one sub-folder per quadrant, or a CSV file."""

import csv
import logging
import math
from collections import Counter
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


def _folder_entries(source: Path) -> tuple[list, list]:
    """(clip id, quadrant, path) of the audio in a folder's label sub-folders, and the files left out (with why)."""
    entries, left_out = [], []
    for path in sorted(source.iterdir()):
        if path.name.startswith("."):  # .ipynb_checkpoints, .DS_Store, ...
            continue
        if path.is_file():
            left_out.append(f"{path} (not in a label folder)")
            continue
        quadrant = _quadrant(path.name, str(path))
        for file in sorted(f for f in path.rglob("*") if f.is_file() and not f.name.startswith(".")):
            if file.suffix.lower() in AUDIO_EXTENSIONS:
                entries.append((str(file.relative_to(source).with_suffix("")), quadrant, str(file)))
            else:
                left_out.append(f"{file} (not an audio file: {', '.join(AUDIO_EXTENSIONS)})")
    return entries, left_out


def _csv_entries(source: Path) -> tuple[list, list]:
    """(clip id, quadrant, path) of each row of a `path,label` CSV, and the rows whose file is missing."""
    entries, left_out = [], []
    with open(source, newline="", encoding="utf-8-sig") as file:  # -sig: spreadsheets often write a byte-order mark
        reader = csv.DictReader(file)
        reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
        if not {"path", "label"} <= set(reader.fieldnames):
            raise EmopiaFormatError(f"{source} needs the columns path and label; its header is {reader.fieldnames}.")
        for line, row in enumerate(reader, start=2):
            relative = Path(row["path"].strip())
            path = relative if relative.is_absolute() else source.parent / relative
            if not path.is_file():
                left_out.append(f"{path} (line {line}: no such file)")
                continue
            clip_id = (row.get("clip_id") or "").strip() or str(relative.with_suffix(""))
            entries.append((clip_id, _quadrant(row["label"], f"{source}, line {line}"), str(path)))
    return entries, left_out


def load_labelled_audio(source, sampling_rate: int | None = None):
    """
    A labelled audio collection as a `datasets.Dataset` with `clip_id`, `label` (`ClassLabel` Q1-Q4), `arousal`,
    `valence` and `audio` (`datasets.Audio`).

    Args:
        source: a folder with sub-folders `Q1` ... `Q4` (or `happy`, `tense`, `sad`, `calm`) holding audio files
            (wav, flac, mp3, ogg, m4a, opus, aiff; any depth), or a CSV file with columns `path` and `label` (paths
            relative to the CSV's folder or absolute; an optional `clip_id` column names the clips).
        sampling_rate: decode audio at this rate.

    Files left out are named in a warning: CSV rows whose file is missing, files outside the label folders, files
    that are not audio (hidden files and folders are skipped). Unknown labels and duplicate clip ids are errors.
    """
    from datasets import ClassLabel, Value

    source = Path(source)
    if source.is_dir():
        entries, left_out = _folder_entries(source)
    elif source.is_file():
        entries, left_out = _csv_entries(source)
    else:
        raise FileNotFoundError(f"Labelled audio not found: {source} (a folder of Q1-Q4 sub-folders, or a CSV file).")
    if left_out:
        shown = "; ".join(left_out[:10]) + ("; ..." if len(left_out) > 10 else "")
        logger.warning("%s: %d files left out: %s", source, len(left_out), shown)
    if not entries:
        raise ValueError(f"No labelled audio found in {source}.")
    # Cache entries are named by clip id: keep ids unique and free of path separators.
    clip_ids = [clip_id.replace("/", "__") for clip_id, _, _ in entries]
    duplicates = sorted(clip_id for clip_id, count in Counter(clip_ids).items() if count > 1)
    if duplicates:
        raise ValueError(f"{source}: clip ids must be unique; repeated: {', '.join(duplicates[:10])}.")
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


def split_validation(dataset, fraction: float, seed: int):
    """
    Splits labelled clips into `(train, validation)`, stratified by quadrant, with `fraction` of them (rounded up)
    for validation. Raises a `ValueError` saying what to change when the split cannot hold every quadrant present.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"The validation fraction must be between 0 and 1, got {fraction}; or give validation data.")
    labels = dataset["label"]
    counts = {QUADRANTS[label]: labels.count(label) for label in sorted(set(labels))}
    validation_size = math.ceil(fraction * len(labels))
    if min(counts.values()) < 2:
        raise ValueError(f"A stratified validation split needs at least 2 clips of each quadrant present; counts: "
                         f"{counts}. Add clips, or give separate validation data.")  # fmt: skip
    if validation_size < len(counts) or len(labels) - validation_size < len(counts):
        # Bounds rounded inwards, so that both printed fractions work.
        lowest = math.ceil(100 * len(counts) / len(labels)) / 100
        highest = math.floor(100 * (len(labels) - len(counts)) / len(labels)) / 100
        raise ValueError(
            f"A validation fraction of {fraction} of {len(labels)} clips gives {validation_size} validation and "
            f"{len(labels) - validation_size} training clips; each needs one clip of every quadrant present "
            f"({len(counts)}): use a fraction between {lowest:.2f} and {highest:.2f}, or give separate validation data."
        )
    split = dataset.train_test_split(test_size=validation_size, seed=seed, stratify_by_column="label")
    return split["train"], split["test"]


__all__ = ["load_labelled_audio", "split_validation"]
