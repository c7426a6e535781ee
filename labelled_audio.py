"""A user's own labelled audio as a `datasets.Dataset`: a folder with one sub-folder per quadrant, or a CSV file."""

import csv
import logging
import math
import os
import random
from collections import Counter
from pathlib import Path

from .emopia import AUDIO_EXTENSIONS, QUADRANTS, EmopiaFormatError, dataset_with_audio_paths, shown_names
from .configuration_mdpiano import QUADRANT_AROUSAL, QUADRANT_VALENCE

logger = logging.getLogger(__name__)
# Besides Q1..Q4, a folder or label may use the quadrant's emotion word.
LABEL_ALIASES = {"q1": "Q1", "happy": "Q1", "q2": "Q2", "tense": "Q2", "q3": "Q3", "sad": "Q3", "q4": "Q4", "calm": "Q4"}
CSV_COLUMNS = ("path", "label", "clip_id")
_EXPECTED = ("give a folder with sub-folders Q1 ... Q4 (or happy, tense, sad, calm) holding the audio, or a CSV file "
             "with columns path,label (saved as UTF-8).")


def _quadrant(label: str | None, where: str) -> str:
    if not (label or "").strip():  # a CSV row short of its label, or with the cell left blank
        raise EmopiaFormatError(f"{where}: the label cell is empty; give each row a label Q1-Q4 (or happy, tense, sad, calm).")
    quadrant = LABEL_ALIASES.get(str(label).strip().lower())
    if quadrant is None:
        raise EmopiaFormatError(f"{where}: unknown label {label!r}; use Q1-Q4 (or happy, tense, sad, calm).")
    return quadrant


def _hidden(path: Path, root: Path) -> bool:
    """Whether a path below `root` is, or lies in, a hidden file or folder (.ipynb_checkpoints, .DS_Store, a Mac zip's
    __MACOSX folder): system clutter, skipped without a word."""
    parts = path.relative_to(root).parts
    return parts[0] == "__MACOSX" or any(part.startswith(".") for part in parts)


def _files_below(folder: Path):
    """Every file below a folder, at any depth, through links to other folders too (each real folder once, so a link
    to a folder above cannot loop), and every link to a file that is not there."""
    visited = set()
    for root, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in visited:
            folders.clear()
            continue
        visited.add(real)
        yield from (Path(root) / name for name in files if (Path(root) / name).is_file() or (Path(root) / name).is_symlink())


def _folder_entries(source: Path) -> tuple[list, list]:
    """(clip id, quadrant, path, name in messages) of the audio in a folder's label sub-folders, and the files left
    out (with why)."""
    entries, left_out = [], []
    for path in sorted(p for p in source.iterdir() if not _hidden(p, source)):
        if path.is_file():
            left_out.append(f"{path} (not in a label folder)")
            continue
        quadrant = _quadrant(path.name, str(path))
        for file in sorted(f for f in _files_below(path) if not _hidden(f, source)):
            relative = file.relative_to(source)
            if not file.exists():
                left_out.append(f"{file} (no such file: a link to {os.readlink(file)}, which is not there)")
            elif file.suffix.lower() in AUDIO_EXTENSIONS:
                entries.append((str(relative.with_suffix("")), quadrant, str(file), str(relative)))
            else:
                left_out.append(f"{file} (not an audio file: {', '.join(AUDIO_EXTENSIONS)})")
    return entries, left_out


def _csv_entries(source: Path) -> tuple[list, list]:
    """(clip id, quadrant, path, name in messages) of each row of a `path,label` CSV (header names in any case,
    values quoted or not, spaces after the commas allowed), and the rows left out: no path, a missing file, or not
    audio. Other columns than `path`, `label` and `clip_id` are named in a warning: none is read."""
    if source.suffix.lower() in AUDIO_EXTENSIONS:
        raise EmopiaFormatError(f"{source} is an audio file: {_EXPECTED}")
    entries, left_out = [], []
    try:
        with open(source, newline="", encoding="utf-8-sig") as file:  # -sig: spreadsheets often write a byte-order mark
            reader = csv.DictReader(file, skipinitialspace=True)
            reader.fieldnames = [name.strip().lower() for name in reader.fieldnames or []]
            if not {"path", "label"} <= set(reader.fieldnames):
                raise EmopiaFormatError(f"{source} needs the columns path and label; its header is {reader.fieldnames}.")
            if ignored := [name for name in reader.fieldnames if name and name not in CSV_COLUMNS]:
                # A split column would otherwise put the test rows in the training data without a word.
                split = (", whatever its split: give each split's rows in a CSV of its own (a split column splits "
                         "nothing)" if "split" in ignored else "")  # fmt: skip
                logger.warning("%s: the columns %s are ignored (only path, label and clip_id are read); every row is "
                               "used%s.", source, ", ".join(ignored), split)  # fmt: skip
            for line, row in enumerate(reader, start=2):
                if not (row["path"] or "").strip():
                    left_out.append(f"{source} (line {line}: the path cell is empty)")
                    continue
                relative = Path(row["path"].strip())
                path = relative if relative.is_absolute() else source.parent / relative
                if not path.is_file():
                    left_out.append(f"{path} (line {line}: {'a folder, not a file' if path.is_dir() else 'no such file'})")
                    continue
                if path.suffix.lower() not in AUDIO_EXTENSIONS:
                    left_out.append(f"{path} (line {line}: not an audio file: {', '.join(AUDIO_EXTENSIONS)})")
                    continue
                clip_id = (row.get("clip_id") or "").strip() or str(relative.with_suffix(""))
                quadrant = _quadrant(row["label"], f"{source}, line {line}")
                entries.append((clip_id, quadrant, str(path), f"line {line} ({relative})"))
    except (UnicodeDecodeError, csv.Error) as error:  # a binary file, or a CSV saved in another encoding
        raise EmopiaFormatError(f"{source} is not a UTF-8 CSV file ({error}): {_EXPECTED}") from None
    return entries, left_out


def load_labelled_audio(source, sampling_rate: int | None = None, return_left_out: bool = False):
    """
    A labelled audio collection as a `datasets.Dataset` with `clip_id`, `label` (`ClassLabel` Q1-Q4), `arousal`,
    `valence` and `audio` (`datasets.Audio`).

    Args:
        source: a folder with sub-folders `Q1` ... `Q4` (or `happy`, `tense`, `sad`, `calm`) holding audio files
            (wav, flac, mp3, ogg, m4a, opus, aiff; any depth), or a UTF-8 CSV file with columns `path` and `label`
            (paths relative to the CSV's folder or absolute; an optional `clip_id` column names the clips).
        sampling_rate: decode audio at this rate.
        return_left_out: also return the files left out, each as `"<path> (<why>)"`.

    Files left out are named in a warning: CSV rows without a path or whose file is missing, links to files that are
    not there, files outside the label folders, files that are not audio, by their extension (hidden files and
    folders, and a `__MACOSX` folder, are skipped). A quadrant without clips, and CSV columns that are not read (a
    `split` column among them), are named in a warning. Unknown or empty labels, duplicate clip ids and a source
    that is neither a folder nor a CSV file are errors.
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
        logger.warning("%s: %d %s left out: %s", source, len(left_out), "file" if len(left_out) == 1 else "files", shown)
    if not entries:
        raise ValueError(f"No labelled audio found in {source}.")
    counts = Counter(quadrant for _, quadrant, _, _ in entries)
    if empty := " or ".join(quadrant for quadrant in QUADRANTS if not counts[quadrant]):
        logger.warning("%s has no clips of %s (clips per quadrant: %s): a model trained on these clips never sees %s, and "
                       "an evaluation on them does not test %s.", source, empty,
                       ", ".join(f"{quadrant} {counts[quadrant]}" for quadrant in QUADRANTS), empty, empty)  # fmt: skip
    # Cache entries are named by clip id: keep ids unique and free of path separators.
    clip_ids = [clip_id.replace("/", "__") for clip_id, _, _, _ in entries]
    named = {}
    for clip_id, (_, _, _, name) in zip(clip_ids, entries):
        named.setdefault(clip_id, []).append(name)
    if repeated := {clip_id: names for clip_id, names in named.items() if len(names) > 1}:
        shown = "; ".join(f"{clip_id} is the id of {' and '.join(names)}" for clip_id, names in list(repeated.items())[:10])
        remedy = ("rename one of each (a clip's id is its path without the extension)" if source.is_dir()
                  else "remove repeated rows, or give each clip an id of its own in a clip_id column ('/' in an id "
                  "reads as '__')")  # fmt: skip
        raise ValueError(f"{source}: clip ids must be unique, but {shown}: {remedy}.")
    features = {"clip_id": Value("string"), "label": ClassLabel(names=QUADRANTS), "arousal": Value("int8"),
                "valence": Value("int8")}  # fmt: skip
    rows = {
        "clip_id": clip_ids,
        "label": [QUADRANTS.index(q) for _, q, _, _ in entries],
        "arousal": [QUADRANT_AROUSAL[q] for _, q, _, _ in entries],
        "valence": [QUADRANT_VALENCE[q] for _, q, _, _ in entries],
        "audio": [path for _, _, path, _ in entries],
    }
    dataset = dataset_with_audio_paths(rows, features, sampling_rate)
    return (dataset, left_out) if return_left_out else dataset


def check_disjoint(train, validation, train_source, validation_source) -> None:
    """
    Raises:
        ValueError: naming the audio files that both labelled collections hold (by resolved path): validating on
            training clips measures memory, and would pick the epoch and stop training by it.
    """
    from datasets import Audio

    def files(dataset):
        return {os.path.realpath(row["path"]) for row in dataset.cast_column("audio", Audio(decode=False))["audio"]}

    if shared := sorted(files(train) & files(validation)):
        shown = ", ".join(shared[:10]) + (" ..." if len(shared) > 10 else "")
        raise ValueError(f"{len(shared)} of the {len(validation)} validation files in {validation_source} are also "
                         f"training files in {train_source}: {shown}. Validate on other recordings (or leave out "
                         "--validation-data to hold out a share of the training data).")  # fmt: skip


def recorded_split(split: dict, train, validation=None, recorded_in="the run's clips.json") -> tuple:
    """
    The `(train, validation)` clips of a run's recorded `split` (its `clips.json`: the clip ids of each side), from
    the labelled clips of `train` and `validation` (given apart; without it, both sides are drawn from `train`), so
    that a resumed run goes on with the clips it started with, whatever was added to the data since: new clips are
    left out (a new split would make clips trained on validation clips) and named in a warning.

    Raises:
        ValueError: naming the recorded clips that the data no longer holds.
    """
    sides = {"train": train, "validation": train if validation is None else validation}
    held = {side: list(dataset["clip_id"]) for side, dataset in sides.items()}
    recorded = {side: set(split[side]) for side in sides}
    present = {side: set(clip_ids) for side, clip_ids in held.items()}
    if gone := [clip_id for side in sides for clip_id in split[side] if clip_id not in present[side]]:
        raise ValueError(f"{len(gone)} clip(s) of the split recorded in {recorded_in} are no longer in the data: "
                         f"{shown_names(gone, 20)}. Put them back to resume the run, or start a new run in another folder.")  # fmt: skip
    if validation is None:
        known = recorded["train"] | recorded["validation"]
        new = [clip_id for clip_id in held["train"] if clip_id not in known]
    else:
        new = [clip_id for side in sides for clip_id in held[side] if clip_id not in recorded[side]]
    if new:
        logger.warning("%d clip(s) are not in the split recorded in %s, which the resumed run keeps: left out: %s. "
                       "Start a new run to train on them.", len(new), recorded_in, shown_names(new, 20))  # fmt: skip
    return tuple(dataset.select([i for i, clip_id in enumerate(held[side]) if clip_id in recorded[side]])
                 for side, dataset in sides.items())  # fmt: skip


def split_validation(dataset, fraction: float, seed: int):
    """
    Splits labelled clips into `(train, validation)` with `fraction` of them (rounded up) for validation, stratified
    by quadrant: each quadrant gives its share of the validation clips in proportion to its clips, but at least one
    and at most all but one, so that both sides hold every quadrant present. The clips of each quadrant are drawn
    at random (`seed`). Raises a `ValueError` saying what to change when the split cannot hold every quadrant.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"The validation fraction must be between 0 and 1, got {fraction}; or give validation data.")
    labels = list(dataset["label"])
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
    draw = random.Random(seed)
    chosen = set()
    for quadrant, share in _validation_shares(counts, validation_size).items():
        clips = [index for index, label in enumerate(labels) if QUADRANTS[label] == quadrant]
        chosen.update(draw.sample(clips, share))
    return dataset.select([i for i in range(len(labels)) if i not in chosen]), dataset.select(sorted(chosen))


def _validation_shares(counts: dict[str, int], size: int) -> dict[str, int]:
    """
    How many of `size` validation clips each quadrant gives: its proportional share rounded by largest remainders,
    kept between 1 and all its clips but one. (Rounding each quadrant's share on its own, as a stratified
    `train_test_split` does, can leave a small quadrant out of one side.) Needs 2+ clips per quadrant and
    `len(counts) <= size <= total - len(counts)`.
    """
    total = sum(counts.values())
    targets = {quadrant: size * count / total for quadrant, count in counts.items()}
    shares = {quadrant: min(max(math.floor(targets[quadrant]), 1), counts[quadrant] - 1) for quadrant in counts}
    while missing := size - sum(shares.values()):
        step = 1 if missing > 0 else -1
        # The quadrant furthest below its proportional share takes one more (furthest above gives one back).
        movable = [quadrant for quadrant in counts if 1 <= shares[quadrant] + step < counts[quadrant]]
        shares[max(movable, key=lambda quadrant: step * (targets[quadrant] - shares[quadrant]))] += step
    return shares


__all__ = ["check_disjoint", "load_labelled_audio", "recorded_split", "split_validation"]
