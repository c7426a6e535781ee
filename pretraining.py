"""Masked-token pretraining of the symbolic encoder on piano MIDI (MAESTRO, GiantMIDI-Piano)."""

import csv
import hashlib
from pathlib import Path

import numpy as np
import torch

from .notes_mdpiano import MidiReadError, notes_to_array, read_midi_notes, window_notes


def maestro_files(maestro_dir, split: str) -> tuple[list[Path], list[str]]:
    """MIDI files of one MAESTRO split listed in `maestro-v2.0.0.csv`, and the listed files that are missing."""
    maestro_dir = Path(maestro_dir)
    with open(maestro_dir / "maestro-v2.0.0.csv", newline="", encoding="utf-8") as file:
        rows = [row for row in csv.DictReader(file) if row["split"] == split]
    present = [maestro_dir / row["midi_filename"] for row in rows]
    missing = [str(path.relative_to(maestro_dir)) for path in present if not path.is_file()]
    return [path for path in present if path.is_file()], missing


def load_corpus(paths, cache_dir) -> tuple[list[np.ndarray], dict[str, str]]:
    """
    Notes (N, 4) of MIDI files, parsed once and cached as `.npy` under `cache_dir/midi_notes`; unreadable files are
    returned with their error instead of stopping the run.
    """
    from tqdm.auto import tqdm

    folder = Path(cache_dir) / "midi_notes"
    folder.mkdir(parents=True, exist_ok=True)
    corpus, failures = [], {}
    for path in tqdm(list(paths), desc="Reading MIDI"):
        cached = folder / (hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16] + ".npy")
        if cached.exists():
            corpus.append(np.load(cached))
            continue
        try:
            notes = notes_to_array(read_midi_notes(path)).astype(np.float32)
        except MidiReadError as error:
            failures[str(path)] = str(error)
            continue
        np.save(cached, notes)
        corpus.append(notes)
    return corpus, failures


def window_ids(processor, notes: np.ndarray, start: float, window_s: float) -> list[int]:
    """Token ids of the notes starting in a window from `start` (tokenized as the processor tokenizes a window)."""
    return processor.symbolic_inputs([window_notes(notes, start, window_s)])["input_ids"][0]


class RandomMidiWindows(torch.utils.data.IterableDataset):
    """
    Endless token sequences of random windows of a MIDI corpus (pieces drawn in proportion to their length).
    `window_s` defaults to the processor's analysis window; shorter windows make pretraining cheaper (attention
    cost grows with the square of the length).
    """

    def __init__(self, corpus: list[np.ndarray], processor, seed: int = 0, window_s: float | None = None):
        self.corpus = [notes for notes in corpus if len(notes)]
        self.processor = processor
        self.seed = seed
        self.window_s = window_s or processor.feature_extractor.chunk_length_s
        durations = np.array([notes[:, 1].max() for notes in self.corpus])
        self.weights = durations / durations.sum()

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, worker.id if worker else 0])
        while True:
            notes = self.corpus[rng.choice(len(self.corpus), p=self.weights)]
            start = rng.uniform(0.0, max(0.0, notes[:, 1].max() - self.window_s))
            yield {"input_ids": window_ids(self.processor, notes, start, self.window_s)}


def fixed_windows(corpus: list[np.ndarray], processor, count: int, seed: int = 0, window_s: float | None = None) -> list[dict]:
    """`count` windows drawn once (for a validation loss that compares across steps)."""
    iterator = iter(RandomMidiWindows(corpus, processor, seed, window_s))
    return [next(iterator) for _ in range(count)]


__all__ = ["RandomMidiWindows", "fixed_windows", "load_corpus", "maestro_files", "window_ids"]
