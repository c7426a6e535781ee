"""Masked-token pretraining of the symbolic encoder on piano MIDI (MAESTRO, GiantMIDI-Piano)."""

import csv
import hashlib
import lzma
import zipfile
from pathlib import Path

import numpy as np
import torch
from transformers import DataCollatorForLanguageModeling

from .caching import is_current, source_stamp, write_atomic
from .clip_archive import read_npz_xz, write_npz_xz
from .notes_mdpiano import MIDI_READER_VERSION, MidiReadError, notes_to_array, read_midi_notes, window_notes


CORPUS_FORMAT_VERSION = 3  # 3 records whether the MIDI was read with its sustain pedal; 2 always was, 1 never


def maestro_files(maestro_dir, split: str) -> tuple[list[Path], list[str]]:
    """MIDI files of one MAESTRO split listed in `maestro-v2.0.0.csv`, and the listed files that are missing."""
    maestro_dir = Path(maestro_dir)
    with open(maestro_dir / "maestro-v2.0.0.csv", newline="", encoding="utf-8") as file:
        rows = [row for row in csv.DictReader(file) if row["split"] == split]
    present = [maestro_dir / row["midi_filename"] for row in rows]
    missing = [str(path.relative_to(maestro_dir)) for path in present if not path.is_file()]
    return [path for path in present if path.is_file()], missing


def load_corpus(paths, cache_dir, sustain_pedal: bool = True) -> tuple[list[np.ndarray], dict[str, str]]:
    """
    Notes (N, 4) of MIDI files, held by their sustain pedal ([`read_midi_notes`]; `sustain_pedal=False` ends them at
    their key release), parsed once and cached as `.npz` under `cache_dir/midi_notes-sustained-v<reader version>`
    (`midi_notes-v<...>` without the pedal). Each entry records the size and modification time of its file and is
    parsed again when either differs (an edited file, or one replaced by an older copy), when it cannot be read (a
    copy cut short) and when the reader's `MIDI_READER_VERSION` changes; entries are written whole or not at all.
    Unreadable MIDI files are returned with their error instead of stopping the run.
    """
    from tqdm.auto import tqdm

    folder = Path(cache_dir) / f"midi_notes{'-sustained' if sustain_pedal else ''}-v{MIDI_READER_VERSION}"
    folder.mkdir(parents=True, exist_ok=True)
    corpus, failures = [], {}
    for path in tqdm(list(paths), desc="Reading MIDI"):
        cached = folder / (hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16] + ".npz")
        try:
            stamp = source_stamp(path)
        except OSError as error:
            failures[str(path)] = f"cannot read {path}: {error}"
            continue
        if is_current(cached, stamp):
            with np.load(cached) as entry:
                corpus.append(entry["notes"])
            continue
        try:
            notes = notes_to_array(read_midi_notes(path, sustain_pedal=sustain_pedal)).astype(np.float32)
        except MidiReadError as error:
            failures[str(path)] = str(error)
            continue
        write_atomic(cached, lambda file: np.savez(file, notes=notes, **stamp))
        corpus.append(notes)
    return corpus, failures


def transcribed_corpus(
    midi_paths: dict[str, Path], processor, cache_dir, seconds: float | None = 120.0, workers: int = 2
) -> tuple[list[np.ndarray], dict[str, str]]:
    """
    Notes that the processor's transcriber finds in renderings of MIDI files (their first `seconds`), each rendered
    through a condition drawn from the training distribution (SoundFont, velocity curve, room, EQ, noise, codec):
    pretraining input that looks like what the classifier reads at inference, wrong notes included. The audio is
    rendered once into `cache_dir/audio/<set>` and transcribed once into the transcription cache; both resume.

    Args:
        midi_paths: `{piece id: MIDI path}`.

    Returns:
        `(corpus, failures)`: the notes (N, 4) of each rendered piece in the order of its id, and `{piece id: error}`
        for pieces that could not be rendered.
    """
    from datasets import Dataset

    from .augmentation import render_folder
    from .caching import cache_dataset, load_entry
    from .emopia import find_audio

    name = "pretraining-" + ("whole" if seconds is None else f"first-{seconds:g}s")
    audio_dir = Path(cache_dir) / "audio" / name
    failures = render_folder(midi_paths, "train", 0, audio_dir, workers, max_duration_s=seconds)
    rendered = {piece: find_audio(audio_dir, piece) for piece in sorted(midi_paths) if piece not in failures}
    dataset = Dataset.from_dict({"clip_id": list(rendered), "audio": list(rendered.values())})
    cached = cache_dataset(dataset, processor, cache_dir, name, num_proc=workers, with_features=False)
    return [load_entry(path)["notes"] for path in cached["notes_path"]], failures


def write_corpus_archive(path, corpora: dict[str, list[np.ndarray]], sustain_pedal: bool = True) -> Path:
    """
    Writes named corpora of notes (e.g. `{"train": [...], "validation": [...]}`, each a list of (N, 4) arrays as
    [`load_corpus`] returns them) into one lzma-compressed `.npz` file at `path`, so that pretraining can run where
    the MIDI files are not (a rented GPU): MAESTRO's train and validation splits with GiantMIDI-Piano take ~21 MB.
    `sustain_pedal` records how the MIDI was read, which [`read_corpus_archive`] checks.
    """
    arrays = {"format_version": np.array(CORPUS_FORMAT_VERSION), "sustain_pedal": np.array(sustain_pedal)}
    for name, corpus in corpora.items():
        arrays[f"{name}.offsets"] = np.cumsum([0] + [len(notes) for notes in corpus])
        notes = [np.asarray(piece, np.float32).reshape(-1, 4) for piece in corpus]
        arrays[f"{name}.notes"] = np.concatenate([np.zeros((0, 4), np.float32), *notes])
    write_npz_xz(path, arrays)
    return Path(path)


def read_corpus_archive(path, sustain_pedal: bool = True) -> dict[str, list[np.ndarray]]:
    """
    The corpora of a file written by [`write_corpus_archive`] from MIDI read with (`sustain_pedal`) or without the
    sustain pedal.

    Raises:
        `ValueError` when the file is missing, is not a corpus archive, or read its MIDI the other way.
    """
    if not Path(path).is_file():
        raise ValueError(f"No corpus archive at {path}; write one with `scripts/pretrain_symbolic.py --export-corpus`.")
    try:
        arrays = read_npz_xz(path)
    except (OSError, EOFError, ValueError, lzma.LZMAError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable corpus archive ({error}).") from error
    if int(arrays.get("format_version", -1)) != CORPUS_FORMAT_VERSION:
        raise ValueError(f"{path} is not a corpus archive of format {CORPUS_FORMAT_VERSION}; export it again.")
    if bool(arrays["sustain_pedal"]) != sustain_pedal:
        held = "with" if arrays["sustain_pedal"] else "without"
        raise ValueError(f"{path} holds MIDI notes read {held} their sustain pedal, and this run reads them "
                         f"{'with' if sustain_pedal else 'without'} it: export the corpus again, or "
                         f"{'add' if sustain_pedal else 'drop'} --ignore-sustain-pedal.")  # fmt: skip
    corpora = {}
    for name in [key.removesuffix(".offsets") for key in arrays if key.endswith(".offsets")]:
        notes, offsets = arrays[f"{name}.notes"], arrays[f"{name}.offsets"]
        corpora[name] = [notes[first:last] for first, last in zip(offsets[:-1], offsets[1:])]
    return corpora


def window_ids(processor, notes: np.ndarray, start: float, window_s: float) -> list[int]:
    """Token ids of the notes starting in a window from `start` (tokenized as the processor tokenizes a window)."""
    return processor.symbolic_inputs([window_notes(notes, start, window_s)])["input_ids"][0]


class RandomMidiWindows(torch.utils.data.IterableDataset):
    """
    Endless token sequences of random windows of a MIDI corpus (pieces drawn in proportion to their length).
    `window_s` defaults to the processor's analysis window, and cannot exceed it (the processor cuts notes there);
    shorter windows make pretraining cheaper (attention cost grows with the square of the length).
    """

    def __init__(self, corpus: list[np.ndarray], processor, seed: int = 0, window_s: float | None = None):
        self.corpus = [notes for notes in corpus if len(notes)]
        self.processor = processor
        self.seed = seed
        self.window_s = window_s or processor.feature_extractor.chunk_length_s
        if self.window_s > processor.feature_extractor.chunk_length_s:
            raise ValueError(f"window_s ({self.window_s:g} s) exceeds the processor's analysis window "
                             f"({processor.feature_extractor.chunk_length_s:g} s), where it cuts the notes.")  # fmt: skip
        durations = np.array([notes[:, 1].max() for notes in self.corpus])
        self.weights = durations / durations.sum()

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, worker.id if worker else 0])
        while True:
            notes = self.corpus[rng.choice(len(self.corpus), p=self.weights)]
            start = rng.uniform(0.0, max(0.0, notes[:, 1].max() - self.window_s))
            yield {"input_ids": window_ids(self.processor, notes, start, self.window_s)}


class LengthGroupedWindows(torch.utils.data.IterableDataset):
    """
    The iterable counterpart of `training.LengthGroupedBatches` (a sampler, for datasets with indices): the items of
    an endless iterable dataset of `{"input_ids": ...}` (such as [`RandomMidiWindows`]) regrouped so that each run
    of `batch_size` consecutive items holds sequences of similar length: `pool` batches' worth are drawn, sorted by
    length and cut into batches, which are yielded whole, in random order. A batch is padded to its
    longest sequence, so random windows waste a large share of each batch on padding; grouped, they waste little.
    Each DataLoader worker groups its own items, and a worker's batches are made of consecutive items, so batches
    stay grouped with `num_workers > 0`.
    """

    def __init__(self, windows: torch.utils.data.IterableDataset, batch_size: int, pool: int = 16, seed: int = 0):
        if batch_size < 1 or pool < 1:
            raise ValueError(f"batch_size ({batch_size}) and pool ({pool}) must be at least 1.")
        self.windows = windows
        self.batch_size = batch_size
        self.pool = pool
        self.seed = seed

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, worker.id if worker else 0, 1])
        items = iter(self.windows)
        while True:
            drawn = sorted((next(items) for _ in range(self.batch_size * self.pool)), key=lambda item: len(item["input_ids"]))
            batches = [drawn[start : start + self.batch_size] for start in range(0, len(drawn), self.batch_size)]
            for index in rng.permutation(len(batches)):
                yield from batches[index]


def fixed_windows(corpus: list[np.ndarray], processor, count: int, seed: int = 0, window_s: float | None = None) -> list[dict]:
    """`count` windows drawn once (for a validation loss that compares across steps)."""
    iterator = iter(RandomMidiWindows(corpus, processor, seed, window_s))
    return [next(iterator) for _ in range(count)]


def masked_evaluation_windows(windows: list[dict], tokenizer, mlm_probability: float, seed: int = 0) -> list[dict]:
    """
    `windows` with their tokens masked once, with `labels` (-100 where not masked): every evaluation then scores the
    same masked tokens. Masks redrawn at each evaluation made two evaluations of the same weights differ, and the
    best checkpoint was picked partly by that noise.
    """
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability, seed=seed)
    masked = []
    for window in windows:
        batch = collator([window])  # one window: nothing padded
        masked.append({name: batch[name][0].tolist() for name in ("input_ids", "attention_mask", "labels")})
    return masked


class MaskedLMCollator(DataCollatorForLanguageModeling):
    """
    transformers' masked-token collator for training batches; batches of windows that carry their `labels` already
    ([`masked_evaluation_windows`]) are only padded (input ids with the pad token, mask with 0, labels with -100).
    """

    def torch_call(self, examples):
        if "labels" not in examples[0]:
            return super().torch_call(examples)
        length = max(len(example["input_ids"]) for example in examples)
        fills = {"input_ids": self.tokenizer.pad_token_id, "attention_mask": 0, "labels": -100}
        return {
            name: torch.tensor([example[name] + [fill] * (length - len(example[name])) for example in examples])
            for name, fill in fills.items()
        }


def resumable_checkpoint(output_dir) -> tuple[Path | None, int, list[Path]]:
    """
    The Trainer checkpoint a rerun into `output_dir` resumes from: the `checkpoint-<step>` saved last and whole (the
    Trainer writes `trainer_state.json` last), with its step (0 without one). Newer folders saved only in part (a run
    killed while saving) are renamed `<name>.incomplete` (`.incomplete-2` and on when a crash at the same step left
    one already), out of the Trainer's way (it would resume from the newest and fail), and returned.
    """
    steps = {int(p.name.split("-", 1)[1]): p for p in Path(output_dir).glob("checkpoint-*") if p.name.split("-", 1)[1].isdigit()}
    whole = [step for step in sorted(steps) if (steps[step] / "trainer_state.json").is_file()]
    last = whole[-1] if whole else 0
    set_aside = [_set_aside(steps[step]) for step in sorted(steps) if step > last and step not in whole]
    return (steps[last] if whole else None), last, set_aside


def _set_aside(folder: Path) -> Path:
    # A run that crashes at the same step twice leaves a second incomplete copy: number it rather than fail.
    target = folder.with_name(f"{folder.name}.incomplete")
    copy = 2
    while target.exists():
        target = folder.with_name(f"{folder.name}.incomplete-{copy}")
        copy += 1
    return folder.rename(target)


__all__ = [
    "LengthGroupedWindows",
    "MaskedLMCollator",
    "RandomMidiWindows",
    "fixed_windows",
    "load_corpus",
    "maestro_files",
    "masked_evaluation_windows",
    "read_corpus_archive",
    "resumable_checkpoint",
    "transcribed_corpus",
    "window_ids",
    "write_corpus_archive",
]
