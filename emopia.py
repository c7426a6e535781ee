"""EMOPIA (Hung et al., ISMIR 2021) as a `datasets.DatasetDict`, from a local copy of its MIDI, labels and splits."""

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from .configuration_mdpiano import QUADRANT_AROUSAL, QUADRANT_NAMES, QUADRANT_VALENCE

logger = logging.getLogger(__name__)

QUADRANTS = list(QUADRANT_NAMES)
# The data beside the repository (../shared/data: emopia/, maestro-v2.0.0/, giantmidi-piano/), or MDPIANO_DATA.
DEFAULT_DATA_DIR = Path(os.environ.get("MDPIANO_DATA") or Path(__file__).resolve().parents[1] / "shared" / "data")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus", ".aiff", ".aif")
# Split files of each scheme, per datasets split name: (file name, column holding the clip name).
SPLIT_SCHEMES = {
    "emopia_cls": {"train": ("train.csv", "fname"), "validation": ("val.csv", "fname"), "test": ("test.csv", "fname")},
    "emopia_1.0": {
        "train": ("train_clip.csv", "clip_name"),
        "validation": ("val_clip.csv", "clip_name"),
        "test": ("test_clip.csv", "clip_name"),
    },
}


class EmopiaFormatError(ValueError):
    """A label or split file that exists but does not have the expected columns or values."""


@dataclass
class EmopiaReport:
    """What [`load_emopia`] could not use, per split: clips listed but without MIDI, audio or label."""

    missing_midi: dict[str, list[str]] = field(default_factory=dict)
    missing_audio: dict[str, list[str]] = field(default_factory=dict)
    missing_label: dict[str, list[str]] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        return sum(len(v) for group in (self.missing_midi, self.missing_audio, self.missing_label) for v in group.values())

    def __str__(self) -> str:
        lines = []
        for what, group in (("no MIDI file", self.missing_midi), ("no audio file", self.missing_audio),
                            ("no label", self.missing_label)):  # fmt: skip
            for split, names in group.items():
                if names:
                    shown = ", ".join(names[:10]) + (f", ... ({len(names) - 10} more)" if len(names) > 10 else "")
                    lines.append(f"{split}: {len(names)} clips skipped, {what}: {shown}")
        return "\n".join(lines) if lines else "every listed clip was found"


def song_id(clip_id: str) -> str:
    """The YouTube id of a clip name `Q<k>_<youtube id>_<index>` (ids may hold underscores)."""
    return clip_id.split("_", 1)[1].rsplit("_", 1)[0]


def read_labels(emopia_dir: str | os.PathLike) -> dict[str, str]:
    """Quadrant of every clip from `label.csv` (columns `ID`, `4Q` with 1-4)."""
    path = Path(emopia_dir) / "label.csv"
    rows = _read_csv(path, required=("ID", "4Q"))
    labels = {}
    for line, row in enumerate(rows, start=2):
        if row["4Q"] not in {"1", "2", "3", "4"}:
            raise EmopiaFormatError(f"{path}, line {line}: 4Q must be 1-4, got {row['4Q']!r}.")
        labels[row["ID"]] = f"Q{row['4Q']}"
    return labels


def read_split(emopia_dir: str | os.PathLike, scheme: str = "emopia_cls") -> dict[str, list[str]]:
    """Clip names of each split (`train`, `validation`, `test`) of a split scheme, in file order."""
    if scheme not in SPLIT_SCHEMES:
        raise ValueError(f"Unknown split scheme {scheme!r}; choose one of {sorted(SPLIT_SCHEMES)}.")
    splits = {}
    for split, (file_name, column) in SPLIT_SCHEMES[scheme].items():
        path = Path(emopia_dir) / "split" / scheme / file_name
        splits[split] = [Path(row[column]).stem for row in _read_csv(path, required=(column,))]
    return splits


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"EMOPIA file not found: {path}. Pass the folder that holds label.csv, midis/ and split/.")
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise EmopiaFormatError(f"{path} lacks the column(s) {missing}; its header is {reader.fieldnames}.")
        return list(reader)


def split_of_audio_set(name: str) -> str:
    """
    The EMOPIA split an audio set renders: `train` and `train-<n>` the train split, `validation` and
    `validation-unseen` the validation split, `test-clean` and `test-unseen` the test split.
    """
    for split in ("train", "validation", "test"):
        if name == split or name.startswith(f"{split}-"):
            return split
    raise ValueError(f"Cannot tell the EMOPIA split of audio set {name!r}: name it train-<n>, validation-* or test-*.")


def find_audio(audio_dir: str | os.PathLike, clip_id: str) -> str | None:
    """The audio file of a clip in `audio_dir` (`<clip_id>.<wav|flac|mp3|ogg|m4a|opus|aiff>`, any case), or None."""
    for extension in AUDIO_EXTENSIONS:
        for suffix in (extension, extension.upper()):
            path = Path(audio_dir) / f"{clip_id}{suffix}"
            if path.is_file():
                return str(path)
    return None


def dataset_with_audio_paths(rows: dict[str, list], features: dict, sampling_rate: int | None = None):
    """
    `Dataset.from_dict(rows)` with the given `features`; an `audio` column of file paths becomes `datasets.Audio`
    (decoded at `sampling_rate`, or the file's own rate). The paths are stored first and cast after: encoding Audio
    values needs torchcodec and casting a column of paths does not, so machines without it can still list, cache
    and train (mdpiano reads the files itself: libsndfile, and torchcodec only for the formats libsndfile lacks).
    """
    from datasets import Audio, Dataset, Features, Value

    audio = "audio" in rows
    dataset = Dataset.from_dict(rows, features=Features({**features, **({"audio": Value("string")} if audio else {})}))
    return dataset.cast_column("audio", Audio(sampling_rate=sampling_rate)) if audio else dataset


def load_emopia(
    emopia_dir: str | os.PathLike = DEFAULT_DATA_DIR / "emopia",
    split_scheme: str = "emopia_cls",
    audio_dir: str | os.PathLike | None = None,
    sampling_rate: int | None = None,
    return_report: bool = False,
    splits: list[str] | None = None,
):
    """
    EMOPIA as a `datasets.DatasetDict` with `train`, `validation` and `test` (or the `splits` asked for).

    Columns: `clip_id`, `song_id` (YouTube id: splits are song-disjoint), `midi_path`, `label` (`ClassLabel` Q1-Q4),
    `arousal` (1 for Q1, Q2) and `valence` (1 for Q1, Q4); with `audio_dir`, also `audio` (`datasets.Audio`, decoded
    at `sampling_rate` if given) from files named `<clip_id>.<wav|flac|mp3|ogg|m4a|opus>` (EMOPIA's own recordings, or
    renderings).

    Clips listed in a split but lacking a MIDI file, an audio file (when `audio_dir` is given) or a label are left
    out and reported: a warning names them, and `return_report=True` also returns the [`EmopiaReport`].

    Args:
        emopia_dir: folder with `label.csv`, `midis/` and `split/<scheme>/`.
        split_scheme: `"emopia_cls"` (the benchmark split of the EMOPIA classifiers: 767 / 198 / 86 clips) or
            `"emopia_1.0"`.
        audio_dir: folder of audio files, one per clip.
        sampling_rate: decode audio at this rate (the `Audio` feature resamples).
        splits: build (and check, and report on) only these splits, e.g. `["test"]` with a folder of test audio.
    """
    from datasets import ClassLabel, DatasetDict, Value

    emopia_dir = Path(emopia_dir)
    if not (emopia_dir / "midis").is_dir():
        raise FileNotFoundError(f"No midis/ folder in {emopia_dir}: pass the EMOPIA folder (it holds label.csv, midis/, split/).")
    if audio_dir is not None and not Path(audio_dir).is_dir():
        raise FileNotFoundError(f"Audio folder not found: {audio_dir}")
    labels = read_labels(emopia_dir)
    report = EmopiaReport()
    features = {
        "clip_id": Value("string"),
        "song_id": Value("string"),
        "midi_path": Value("string"),
        "label": ClassLabel(names=QUADRANTS),
        "arousal": Value("int8"),
        "valence": Value("int8"),
    }
    listed = read_split(emopia_dir, split_scheme)
    unknown = sorted(set(splits or ()) - set(listed))
    if unknown:
        raise ValueError(f"No split {unknown} in EMOPIA's {split_scheme!r} scheme: choose from {sorted(listed)}.")
    datasets = {}
    for split, clip_ids in listed.items():
        if splits is not None and split not in splits:
            continue
        rows = {name: [] for name in features} | ({"audio": []} if audio_dir is not None else {})
        report.missing_midi[split], report.missing_audio[split], report.missing_label[split] = [], [], []
        for clip_id in clip_ids:
            midi_path = emopia_dir / "midis" / f"{clip_id}.mid"
            audio_path = find_audio(audio_dir, clip_id) if audio_dir is not None else None
            if not midi_path.is_file():
                report.missing_midi[split].append(clip_id)
            elif clip_id not in labels:
                report.missing_label[split].append(clip_id)
            elif audio_dir is not None and audio_path is None:
                report.missing_audio[split].append(clip_id)
            else:
                quadrant = labels[clip_id]
                rows["clip_id"].append(clip_id)
                rows["song_id"].append(song_id(clip_id))
                rows["midi_path"].append(str(midi_path))
                rows["label"].append(QUADRANTS.index(quadrant))
                rows["arousal"].append(QUADRANT_AROUSAL[quadrant])
                rows["valence"].append(QUADRANT_VALENCE[quadrant])
                if audio_dir is not None:
                    rows["audio"].append(audio_path)
        datasets[split] = dataset_with_audio_paths(rows, features, sampling_rate)
    if report.skipped:
        logger.warning("EMOPIA (%s): %d listed clips left out.\n%s", emopia_dir, report.skipped, report)
    dataset = DatasetDict(datasets)
    return (dataset, report) if return_report else dataset


__all__ = ["EmopiaFormatError", "EmopiaReport", "dataset_with_audio_paths", "find_audio", "load_emopia", "read_labels",
           "read_split", "song_id", "split_of_audio_set"]
