"""EMOPIA (Hung et al., ISMIR 2021) as a `datasets.DatasetDict`, from a local copy of its MIDI, labels and splits."""

import csv
import itertools
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .configuration_mdpiano import QUADRANT_AROUSAL, QUADRANT_NAMES, QUADRANT_VALENCE

logger = logging.getLogger(__name__)

QUADRANTS = list(QUADRANT_NAMES)
# The data beside the repository (../shared/data: emopia/, maestro-v2.0.0/, giantmidi-piano/), or MDPIANO_DATA.
DEFAULT_DATA_DIR = Path(os.environ.get("MDPIANO_DATA") or Path(__file__).resolve().parents[1] / "shared" / "data")
# libsndfile reads the first ones; the rest (aac, wma, webm, mp4, ...) go through ffmpeg.
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus", ".aiff", ".aif", ".aac", ".wma", ".webm", ".mp4", ".oga", ".wave")
# Split files of each scheme, per datasets split name: (file name, column holding the clip name).
SPLIT_SCHEMES = {
    "emopia_cls": {"train": ("train.csv", "fname"), "validation": ("val.csv", "fname"), "test": ("test.csv", "fname")},
    "emopia_1.0": {
        "train": ("train_clip.csv", "clip_name"),
        "validation": ("val_clip.csv", "clip_name"),
        "test": ("test_clip.csv", "clip_name"),
    },
}
# EMOPIA names each clip by its quadrant and song: `Q<quadrant>_<youtube id>_<index>`.
CLIP_NAME = re.compile(r"Q([1-4])_(.+)_(\d+)")


class EmopiaFormatError(ValueError):
    """
    EMOPIA files that exist but do not fit together: missing columns, bad values, labels that contradict each other, a
    clip listed twice or in two splits, several audio files for one clip.
    """


@dataclass
class EmopiaReport:
    """What [`load_emopia`] could not use, per split: listed clips without a (readable) MIDI file, audio or label."""

    missing_midi: dict[str, list[str]] = field(default_factory=dict)
    missing_audio: dict[str, list[str]] = field(default_factory=dict)
    missing_label: dict[str, list[str]] = field(default_factory=dict)
    unreadable_midi: dict[str, list[str]] = field(default_factory=dict)

    def _groups(self) -> tuple:
        """(what the clips lack, their names per split) for each reason to leave clips out."""
        return (
            ("no MIDI file", self.missing_midi),
            ("unreadable MIDI file (empty, or no MThd header)", self.unreadable_midi),
            ("no audio file", self.missing_audio),
            ("no label", self.missing_label),
        )

    @property
    def skipped(self) -> int:
        return sum(len(names) for _, group in self._groups() for names in group.values())

    def left_out(self, split: str) -> list[str]:
        """The names of the split's listed clips that were left out, for whatever reason, sorted."""
        return sorted(name for _, group in self._groups() for name in group.get(split, []))

    def __str__(self) -> str:
        lines = [f"{split}: {_count(len(names), 'clip')} skipped, {what}: {shown_names(names)}"
                 for what, group in self._groups() for split, names in group.items() if names]  # fmt: skip
        return "\n".join(lines) if lines else "every listed clip was found"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def shown_names(names: list[str], limit: int = 10) -> str:
    """The first `limit` names, joined for a message, and how many more there are."""
    return ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def song_id(clip_id: str) -> str:
    """The YouTube id of a clip name `Q<k>_<youtube id>_<index>` (ids may hold underscores)."""
    return clip_id.split("_", 1)[1].rsplit("_", 1)[0]


def _name_quadrant(clip_id: str, where: str) -> str:
    """The quadrant a clip's name starts with: EMOPIA names clips by their label."""
    match = CLIP_NAME.fullmatch(clip_id or "")
    if match is None:
        raise EmopiaFormatError(f"{where}: {clip_id!r} is not an EMOPIA clip name (Q<1-4>_<youtube id>_<index>).")
    return f"Q{match[1]}"


def _check_listed_once(path: Path, lines: dict[str, list[int]]) -> None:
    """Raises if a clip has several rows in one file (`lines`: the rows of each clip), rather than let one win."""
    repeated = [f"{clip_id} (lines {', '.join(map(str, rows))})" for clip_id, rows in lines.items() if len(rows) > 1]
    if repeated:
        raise EmopiaFormatError(
            f"{path} lists {_count(len(repeated), 'clip')} more than once: {shown_names(repeated)}. Keep one row per clip."
        )


def read_labels(emopia_dir: str | os.PathLike) -> dict[str, str]:
    """
    Quadrant of every clip from `label.csv` (columns `ID`, `4Q` with 1-4). Every row is checked: a clip listed twice,
    or whose 4Q contradicts the quadrant its name starts with, is an [`EmopiaFormatError`].
    """
    path = Path(emopia_dir) / "label.csv"
    labels, lines = {}, {}
    for line, row in enumerate(_read_csv(path, required=("ID", "4Q")), start=2):
        if row["4Q"] not in {"1", "2", "3", "4"}:
            raise EmopiaFormatError(f"{path}, line {line}: 4Q must be 1-4, got {row['4Q']!r}.")
        clip_id, quadrant = row["ID"], f"Q{row['4Q']}"
        named = _name_quadrant(clip_id, f"{path}, line {line}")
        if quadrant != named:
            raise EmopiaFormatError(f"{path}, line {line}: {clip_id} has 4Q {row['4Q']} ({quadrant}), but its name "
                                    f"says {named}. Correct whichever is wrong.")  # fmt: skip
        labels[clip_id] = quadrant
        lines.setdefault(clip_id, []).append(line)
    _check_listed_once(path, lines)
    return labels


def read_split(
    emopia_dir: str | os.PathLike, scheme: str = "emopia_cls", splits: str | list[str] | None = None
) -> dict[str, list[str]]:
    """
    Clip names of each split (`train`, `validation`, `test`, or only `splits`) of a split scheme, in file order.

    Only the files of the splits asked for are read, and checked: a clip listed twice in a file or in two of the files,
    or whose `label` column (emopia_cls has one) contradicts the quadrant its name starts with, is an
    [`EmopiaFormatError`]; a song with clips in two splits is a warning (the official splits are song-disjoint).
    """
    if scheme not in SPLIT_SCHEMES:
        raise ValueError(f"Unknown split scheme {scheme!r}; choose one of {sorted(SPLIT_SCHEMES)}.")
    splits = [splits] if isinstance(splits, str) else list(SPLIT_SCHEMES[scheme] if splits is None else splits)
    unknown = sorted(set(splits) - set(SPLIT_SCHEMES[scheme]))
    if unknown:
        choices = sorted(SPLIT_SCHEMES[scheme])
        raise ValueError(f"No split {unknown} in EMOPIA's {scheme!r} scheme: choose from {choices}.")
    split_dir = Path(emopia_dir) / "split" / scheme
    listed, files_of = {}, {}
    for split, (file_name, column) in SPLIT_SCHEMES[scheme].items():
        if split not in splits:
            continue
        path = split_dir / file_name
        if not path.is_file():
            raise FileNotFoundError(
                f"The {split} split file of EMOPIA's {scheme!r} scheme is missing: {path}. Restore it from EMOPIA, or "
                "ask only for the splits you have (`splits=`)."
            )
        lines = {}
        for line, row in enumerate(_read_csv(path, required=(column,)), start=2):
            clip_id = Path(row[column] or "").stem
            quadrant = _name_quadrant(clip_id, f"{path}, line {line}")
            if row.get("label") not in (None, quadrant):
                raise EmopiaFormatError(f"{path}, line {line}: {clip_id} is labelled {row['label']!r}, but its name "
                                        f"says {quadrant}. Correct whichever is wrong.")  # fmt: skip
            lines.setdefault(clip_id, []).append(line)
            files_of.setdefault(clip_id, []).append(file_name)
        _check_listed_once(path, lines)
        listed[split] = list(lines)
    leaked = [f"{clip_id} ({' and '.join(names)})" for clip_id, names in files_of.items() if len(names) > 1]
    if leaked:
        raise EmopiaFormatError(f"{split_dir}: {_count(len(leaked), 'clip')} in more than one split file: "
                                f"{shown_names(leaked)}. Keep each clip in one split.")  # fmt: skip
    songs = {split: {song_id(clip_id) for clip_id in clip_ids} for split, clip_ids in listed.items()}
    shared = sorted(set().union(*(songs[a] & songs[b] for a, b in itertools.combinations(songs, 2))))
    if shared:
        shown = [f"{song}: {', '.join(split for split in songs if song in songs[split])}" for song in shared]
        logger.warning("%s: clips of %s are in more than one split (%s), though the official %r splits are "
                       "song-disjoint (were the split files edited?); scores on a split sharing songs with training "
                       "are optimistic.", split_dir, _count(len(shared), "song"), shown_names(shown), scheme)  # fmt: skip
    return listed


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"EMOPIA file not found: {path}. Pass the folder that holds label.csv, midis/ and split/.")
    with open(path, newline="", encoding="utf-8-sig") as file:  # -sig: spreadsheets often write a byte-order mark
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


def _midi_is_readable(path: Path) -> bool:
    """Whether a file starts like a Standard MIDI File: catches empty and non-MIDI files without parsing 1,078 files."""
    try:
        with open(path, "rb") as file:
            return file.read(4) == b"MThd"
    except OSError:
        return False


def _audio_files(audio_dir: str | os.PathLike) -> dict[str, list[str]]:
    """The audio files in `audio_dir` by clip name, in name order (one listing: the folder may hold thousands)."""
    with os.scandir(audio_dir) as entries:
        names = sorted(entry.name for entry in entries if entry.is_file())
    files = {}
    for name in names:
        clip_id, extension = os.path.splitext(name)
        if extension.lower() in AUDIO_EXTENSIONS:
            files.setdefault(clip_id, []).append(str(Path(audio_dir) / name))
    return files


def _check_one_audio_file(audio_dir: str | os.PathLike, files: dict[str, list[str]]) -> None:
    """Raises if a clip has several audio files (`files`: each clip's): which one is its audio would be a guess."""
    several = [f"{clip_id} ({', '.join(Path(path).name for path in paths)})" for clip_id, paths in files.items()
               if len(paths) > 1]  # fmt: skip
    if several:
        raise EmopiaFormatError(f"{audio_dir} holds several audio files for {_count(len(several), 'clip')}: "
                                f"{shown_names(several)}. Keep one file per clip.")  # fmt: skip


def find_audio(audio_dir: str | os.PathLike, clip_id: str) -> str | None:
    """
    The audio file of a clip in `audio_dir`, `<clip_id>.<ext>` with `ext` one of wav, flac, mp3, ogg, m4a, opus, aiff,
    aif, aac, wma, webm, mp4, oga, wave in any case (`.WAV`, `.Flac`), or None. Several files for one clip are an [`EmopiaFormatError`].
    """
    paths = _audio_files(audio_dir).get(clip_id, [])
    _check_one_audio_file(audio_dir, {clip_id: paths})
    return paths[0] if paths else None


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


def _midi_files(folder: Path) -> dict[str, Path]:
    """The MIDI file of each clip id in EMOPIA's midis/ folder: `<clip_id>.mid`, or `.midi` in any case (as files
    copied through other systems may be named)."""
    files = {}
    for path in sorted(folder.iterdir(), key=lambda p: p.suffix != ".mid"):  # .mid first: it wins a tie
        if path.suffix.lower() in (".mid", ".midi") and path.is_file():
            files.setdefault(path.stem, path)
    return files


def load_emopia(
    emopia_dir: str | os.PathLike = DEFAULT_DATA_DIR / "emopia",
    split_scheme: str = "emopia_cls",
    audio_dir: str | os.PathLike | None = None,
    sampling_rate: int | None = None,
    return_report: bool = False,
    splits: str | list[str] | None = None,
):
    """
    EMOPIA as a `datasets.DatasetDict` with `train`, `validation` and `test` (or the `splits` asked for).

    Columns: `clip_id`, `song_id` (YouTube id), `midi_path`, `label` (`ClassLabel` Q1-Q4), `arousal` (1 for Q1, Q2) and
    `valence` (1 for Q1, Q4); with `audio_dir`, also `audio` (`datasets.Audio`, decoded at `sampling_rate` if given)
    from files named `<clip_id>.<ext>` (any extension [`find_audio`] takes; EMOPIA's own recordings, or renderings).

    Clips listed in a split but lacking a MIDI file, with an unreadable one (empty, or not starting with the `MThd`
    header: a cheap check, not a parse), lacking an audio file (when `audio_dir` is given) or a label are left out and
    reported: a warning names them, and `return_report=True` also returns the [`EmopiaReport`]. Labels that
    contradict each other (`label.csv`, the `Q<k>_` name prefix, a split file's `label` column), a clip listed twice in
    a file or in two splits, and several audio files for one clip are [`EmopiaFormatError`]s. The official splits are
    song-disjoint: a song with clips in two splits is a warning.

    Args:
        emopia_dir: folder with `label.csv`, `midis/` and `split/<scheme>/`.
        split_scheme: `"emopia_cls"` (the benchmark split of the EMOPIA classifiers: 767 / 198 / 86 clips) or
            `"emopia_1.0"`.
        audio_dir: folder of audio files, one per clip.
        sampling_rate: decode audio at this rate (the `Audio` feature resamples).
        splits: build (and check, and report on) only these splits, e.g. `"test"` or `["test"]` with a folder of
            test audio; only their split files are read.
    """
    from datasets import ClassLabel, DatasetDict, Value

    emopia_dir = Path(emopia_dir)
    if not (emopia_dir / "midis").is_dir():
        if (emopia_dir.parent / "midis").is_dir():  # a script's --data given the EMOPIA folder itself
            raise FileNotFoundError(f"No midis/ folder in {emopia_dir}, but {emopia_dir.parent} holds one: the scripts' "
                                    f"--data names the folder that holds emopia/ ({emopia_dir.parent.parent}).")  # fmt: skip
        raise FileNotFoundError(f"No midis/ folder in {emopia_dir}: pass the EMOPIA folder (it holds label.csv, midis/, split/).")
    if audio_dir is not None and not Path(audio_dir).is_dir():
        raise FileNotFoundError(f"Audio folder not found: {audio_dir}")
    labels = read_labels(emopia_dir)
    listed = read_split(emopia_dir, split_scheme, splits)
    audio = _audio_files(audio_dir) if audio_dir is not None else {}
    _check_one_audio_file(audio_dir, {clip_id: audio.get(clip_id, []) for ids in listed.values() for clip_id in ids})
    report = EmopiaReport()
    features = {
        "clip_id": Value("string"),
        "song_id": Value("string"),
        "midi_path": Value("string"),
        "label": ClassLabel(names=QUADRANTS),
        "arousal": Value("int8"),
        "valence": Value("int8"),
    }
    midi_files = _midi_files(emopia_dir / "midis")
    datasets = {}
    for split, clip_ids in listed.items():
        rows = {name: [] for name in features} | ({"audio": []} if audio_dir is not None else {})
        for _, group in report._groups():
            group[split] = []
        for clip_id in clip_ids:
            midi_path = midi_files.get(clip_id)
            if midi_path is None:
                report.missing_midi[split].append(clip_id)
            elif not _midi_is_readable(midi_path):
                report.unreadable_midi[split].append(clip_id)
            elif clip_id not in labels:
                report.missing_label[split].append(clip_id)
            elif audio_dir is not None and clip_id not in audio:
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
                    rows["audio"].append(audio[clip_id][0])
        datasets[split] = dataset_with_audio_paths(rows, features, sampling_rate)
    if report.skipped:
        logger.warning("EMOPIA (%s): %s left out.\n%s", emopia_dir, _count(report.skipped, "listed clip"), report)
    dataset = DatasetDict(datasets)
    return (dataset, report) if return_report else dataset


__all__ = ["EmopiaFormatError", "EmopiaReport", "dataset_with_audio_paths", "find_audio", "load_emopia", "read_labels",
           "read_split", "shown_names", "song_id", "split_of_audio_set"]
