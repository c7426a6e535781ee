"""Refined MIDI-like tokenizer of mdpiano: Note-On, Harmonic, Velocity, Time-Shift and Note-Off events."""

import json
import os
import re
from collections import deque
from collections.abc import Mapping

import numpy as np
from transformers import BatchEncoding, PreTrainedTokenizer
from transformers.utils import logging

from .configuration_mdpiano import SPECIAL_TOKENS, symbolic_vocabulary
from .notes_mdpiano import Note, is_note_batch, notes_to_array, read_midi_notes

logger = logging.get_logger(__name__)

VOCAB_FILES_NAMES = {"vocab_file": "vocab.json"}
_TOKEN_PATTERN = re.compile(r"^(Note-On|Note-Off|Harmonic|Velocity|Time-Shift)_(\d+)$")
DEFAULT_VELOCITY = 64  # for a decoded Note-On that has no Velocity token (e.g. cut by truncation)


class MDPianoTokenizer(PreTrainedTokenizer):
    r"""
    Turns piano notes into the refined MIDI-like token sequence of Zhu et al. (ADMA 2023) and back.

    For every note, in onset order, the sequence holds `Note-On_<pitch>`, `Harmonic_<n>` and `Velocity_<v>`;
    `Note-Off_<pitch>` marks its offset, and `Time-Shift_<ms>` tokens advance time between events (gaps longer than
    the largest shift use several). At one instant, offsets of notes that started earlier come first, then onsets
    (by pitch), then offsets of notes that start and end there (zero-length notes).

    `Harmonic_<n>` is the number of notes sounding at the note's onset, the note itself and notes still held from
    earlier included (clipped to `max_harmonic`): the note's harmonic context. It is derived, so decoding ignores it.

    Quantisation: onsets and offsets are rounded to the `time_shift_resolution_ms` grid (error at most half a step);
    velocities to the nearest of `velocity_bins` representative values (bin centres; error at most half a bin).
    A piano key cannot sound twice at once: a note still sounding when its key is struck again is released at the new
    onset (on the time grid). Within that, decoding returns every note.

    Truncation keeps the beginning: the first `max_length - 2` event tokens (the earliest notes), between `<s>` and
    `</s>`, matching the acoustic window, which also starts at the window's start.

    Token strings carry their values (`Velocity_66` means velocity 66, `Time-Shift_250` means 250 ms), so
    `vocab.json` fully describes the quantisation; without a vocab file the vocabulary is built from the arguments.

    Args:
        vocab_file (`str`, *optional*): a saved `vocab.json` (token to id).
        time_shift_resolution_ms (`int`, *optional*, defaults to 10): time grid in milliseconds.
        max_time_shift_ms (`int`, *optional*, defaults to 1000): longest single Time-Shift.
        velocity_bins (`int`, *optional*, defaults to 32): number of Velocity tokens.
        max_harmonic (`int`, *optional*, defaults to 16): largest Harmonic value.
        model_max_length (`int`, *optional*, defaults to 2048): maximum sequence length, special tokens included.
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab_file=None,
        time_shift_resolution_ms=10,
        max_time_shift_ms=1000,
        velocity_bins=32,
        max_harmonic=16,
        model_max_length=2048,
        pad_token=SPECIAL_TOKENS["pad_token"],
        bos_token=SPECIAL_TOKENS["bos_token"],
        eos_token=SPECIAL_TOKENS["eos_token"],
        mask_token=SPECIAL_TOKENS["mask_token"],
        unk_token=SPECIAL_TOKENS["unk_token"],
        **kwargs,
    ):
        if vocab_file is not None:
            with open(vocab_file, encoding="utf-8") as file:
                self.vocab = {token: int(index) for token, index in json.load(file).items()}
        else:
            tokens = symbolic_vocabulary(time_shift_resolution_ms, max_time_shift_ms, velocity_bins, max_harmonic)
            self.vocab = {token: index for index, token in enumerate(tokens)}
        self.ids_to_tokens = {index: token for token, index in self.vocab.items()}
        self._build_tables()
        kwargs.setdefault("cls_token", bos_token)
        kwargs.setdefault("special_tokens_pattern", "bos_eos")
        super().__init__(
            time_shift_resolution_ms=self.time_shift_resolution_ms,
            max_time_shift_ms=self.time_shift_resolution_ms * self.max_shift_steps,
            velocity_bins=len(self.velocity_values),
            max_harmonic=self.max_harmonic,
            model_max_length=model_max_length,
            pad_token=pad_token,
            bos_token=bos_token,
            eos_token=eos_token,
            mask_token=mask_token,
            unk_token=unk_token,
            **kwargs,
        )

    def _build_tables(self):
        """Lookup tables from the vocabulary: ids of every event token and the value each stands for."""
        values = {kind: {} for kind in ("Note-On", "Note-Off", "Harmonic", "Velocity", "Time-Shift")}
        for token, index in self.vocab.items():
            match = _TOKEN_PATTERN.match(token)
            if match:
                values[match.group(1)][int(match.group(2))] = index
        for kind in ("Note-On", "Note-Off"):
            if sorted(values[kind]) != list(range(128)):
                raise ValueError(f"The vocabulary must hold {kind}_0 .. {kind}_127.")
        self.note_on_ids = np.array([values["Note-On"][p] for p in range(128)])
        self.note_off_ids = np.array([values["Note-Off"][p] for p in range(128)])
        self.max_harmonic = max(values["Harmonic"], default=0)
        if sorted(values["Harmonic"]) != list(range(1, self.max_harmonic + 1)) or self.max_harmonic == 0:
            raise ValueError("The vocabulary must hold Harmonic_1 .. Harmonic_<max> without gaps.")
        self.harmonic_ids = np.array([values["Harmonic"][n] for n in range(1, self.max_harmonic + 1)])
        self.velocity_values = np.array(sorted(values["Velocity"]))
        if len(self.velocity_values) == 0:
            raise ValueError("The vocabulary holds no Velocity tokens.")
        self.velocity_ids = np.array([values["Velocity"][v] for v in self.velocity_values])
        shifts_ms = sorted(values["Time-Shift"])
        if not shifts_ms or shifts_ms != [shifts_ms[0] * (i + 1) for i in range(len(shifts_ms))]:
            raise ValueError("Time-Shift tokens must be the multiples 1, 2, ..., K of one resolution (ms).")
        self.time_shift_resolution_ms = shifts_ms[0]
        self.max_shift_steps = len(shifts_ms)
        self.time_shift_ids = np.array([-1] + [values["Time-Shift"][ms] for ms in shifts_ms])  # index = steps
        # id -> (kind, value) for decoding
        self._id_events = {}
        for kind, table in values.items():
            for value, index in table.items():
                self._id_events[index] = (kind, value)

    # --- vocabulary plumbing required by PreTrainedTokenizer ---

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab, **self.added_tokens_encoder)

    def _tokenize(self, text, **kwargs):
        return text.split()

    def _convert_token_to_id(self, token):
        return self.vocab.get(token, self.vocab.get(str(self.unk_token)))

    def _convert_id_to_token(self, index):
        return self.ids_to_tokens.get(index, str(self.unk_token))

    def convert_tokens_to_string(self, tokens):
        return " ".join(tokens)

    def save_vocabulary(self, save_directory, filename_prefix=None):
        if not os.path.isdir(save_directory):
            raise ValueError(f"Vocabulary path {save_directory} should be a directory.")
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        path = os.path.join(save_directory, prefix + VOCAB_FILES_NAMES["vocab_file"])
        with open(path, "w", encoding="utf-8") as file:
            json.dump(self.vocab, file, indent=1, ensure_ascii=False)
            file.write("\n")
        return (path,)

    # --- notes <-> ids ---

    @property
    def time_resolution_s(self) -> float:
        return self.time_shift_resolution_ms / 1000

    def notes_to_ids(self, notes, max_tokens: int | None = None) -> np.ndarray:
        """
        Event token ids (no special tokens) of one set of notes, as an int64 array.

        Args:
            notes: [`Note`]s, `(onset, offset, pitch, velocity)` tuples, `pretty_midi.Note`s or an (N, 4) array.
            max_tokens: keep only the first `max_tokens` ids. Only those are built: a long silence is spelled out in
                Time-Shift tokens (one per `max_time_shift_ms`), so the whole sequence grows with the time the notes
                span, not with their number.
        """
        array = notes_to_array(notes)
        n = len(array)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        onset = np.rint(array[:, 0] / self.time_resolution_s).astype(np.int64)
        offset = np.maximum(np.rint(array[:, 1] / self.time_resolution_s).astype(np.int64), onset)
        pitch = array[:, 2].astype(np.int64)
        offset = release_restruck_keys(onset, offset, pitch)
        zero_length = offset == onset

        # Notes sounding at each onset: started at or before it and not yet ended, plus the zero-length notes struck
        # at that instant (they never sound over an interval), so every note of a chord counts the same notes.
        sounding = np.searchsorted(np.sort(onset), onset, "right") - np.searchsorted(np.sort(offset), onset, "right")
        struck_zero_length = np.sort(onset[zero_length])
        sounding += np.searchsorted(struck_zero_length, onset, "right") - np.searchsorted(struck_zero_length, onset, "left")
        harmonic = np.clip(sounding, 1, self.max_harmonic)
        midpoints = (self.velocity_values[1:] + self.velocity_values[:-1]) / 2
        velocity_index = np.searchsorted(midpoints, array[:, 3], side="left")

        # Events: kind 0 = Note-Off of a note that began earlier, 1 = Note-On, 2 = Note-Off of a zero-length note.
        time = np.concatenate([onset, offset])
        kind = np.concatenate([np.ones(n, np.int64), np.where(zero_length, 2, 0)])
        note = np.concatenate([np.arange(n), np.arange(n)])
        # Notes struck together on one key: the one ending first comes first, as decoding pairs a key's offs with
        # its ons in order.
        order = np.lexsort((note, np.concatenate([offset, offset]), np.concatenate([pitch, pitch]), kind, time))
        time, kind, note = time[order], kind[order], note[order]
        is_on = kind == 1

        gap = np.diff(time, prepend=0)
        full_shifts, remainder = np.divmod(gap, self.max_shift_steps)
        shift_count = full_shifts + (remainder > 0)
        total = shift_count + np.where(is_on, 3, 1)
        start = np.cumsum(total) - total
        if max_tokens is not None and total.sum() > max_tokens:
            # The events that start within the kept ids; the last one's shifts are spelled out only that far.
            kept = start < max_tokens
            time, kind, note, is_on, remainder, start = (a[kept] for a in (time, kind, note, is_on, remainder, start))
            full_shifts = np.minimum(full_shifts[kept], max_tokens - start)
            shift_count = full_shifts + (remainder > 0)
            total = shift_count + np.where(is_on, 3, 1)
        ids = np.empty(int(total.sum()), dtype=np.int64)

        # Time shifts: `full_shifts` maximal shifts, then one shift of the remainder.
        first_full = np.repeat(start, full_shifts)
        ids[first_full + _ranges(full_shifts)] = self.time_shift_ids[self.max_shift_steps]
        has_remainder = remainder > 0
        ids[start[has_remainder] + full_shifts[has_remainder]] = self.time_shift_ids[remainder[has_remainder]]

        body = start + shift_count
        on_notes = note[is_on]
        ids[body[is_on]] = self.note_on_ids[pitch[on_notes]]
        ids[body[is_on] + 1] = self.harmonic_ids[harmonic[on_notes] - 1]
        ids[body[is_on] + 2] = self.velocity_ids[velocity_index[on_notes]]
        ids[body[~is_on]] = self.note_off_ids[pitch[note[~is_on]]]
        return ids if max_tokens is None else ids[:max_tokens]

    def ids_to_notes(self, ids) -> list[Note]:
        """
        Notes of a token id sequence (special tokens, Harmonic and unknown ids are skipped; `</s>` ends it).

        A Note-On without a Velocity token gets velocity 64; a note never turned off ends at the last time of the
        sequence; a Note-Off without a sounding note of its pitch is ignored.
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        steps, notes, last_on = 0, [], None
        sounding = {}
        eos_id = self.eos_token_id
        for index in ids:
            if index == eos_id:
                break
            kind, value = self._id_events.get(index, (None, None))
            if kind == "Time-Shift":
                steps += value // self.time_shift_resolution_ms
            elif kind == "Note-On":
                notes.append([steps, None, value, DEFAULT_VELOCITY])
                sounding.setdefault(value, deque()).append(len(notes) - 1)
                last_on = len(notes) - 1
            elif kind == "Velocity" and last_on is not None:
                notes[last_on][3] = value
                last_on = None
            elif kind == "Note-Off" and sounding.get(value):
                notes[sounding[value].popleft()][1] = steps
        resolution = self.time_resolution_s
        decoded = [
            Note(on * resolution, (steps if off is None else off) * resolution, pitch, velocity)
            for on, off, pitch, velocity in notes
        ]
        return sorted(decoded, key=lambda n: (n.onset, n.pitch))

    def notes_to_tokens(self, notes) -> list[str]:
        """Human-readable token strings of one set of notes (no special tokens)."""
        return [self.ids_to_tokens[i] for i in self.notes_to_ids(notes).tolist()]

    def encode_notes(
        self,
        notes,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool = True,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool = True,
        warn_truncation: bool = True,
    ) -> BatchEncoding:
        """
        Tokenizes one set of notes or a batch of them.

        Args:
            notes: one set of notes (see [`notes_to_ids`]) or a list of such sets.
            add_special_tokens: wrap each sequence in `<s>` ... `</s>`.
            padding: `False`, `True` / `"longest"` or `"max_length"`.
            truncation: keep at most `max_length` tokens (the beginning; a warning says when notes are left out).
            max_length: defaults to `model_max_length`.
            return_tensors: `"pt"`, `"np"` or `None`.
            warn_truncation: warn when truncation leaves notes (or note ends) out. The processor turns it off: it
                tokenizes analysis windows, whose token limit is the model's own.

        Returns:
            [`BatchEncoding`] with `input_ids` and `attention_mask`, batched when `notes` is a batch.
        """
        batched = is_note_batch(notes)
        max_length = max_length or self.model_max_length
        # With truncation only the kept ids are built (a long gap would otherwise cost memory for nothing).
        kept = max(0, max_length - (self.num_special_tokens_to_add() if add_special_tokens else 0)) if truncation else None
        # One id past the limit tells a cut sequence from one that just fits.
        sequences = [self.notes_to_ids(n, max_tokens=None if kept is None else kept + 1).tolist()
                     for n in (notes if batched else [notes])]  # fmt: skip
        if kept is not None and any(len(ids) > kept for ids in sequences):
            if warn_truncation:
                logger.warning_once(
                    f"A note sequence longer than {max_length} tokens was cut to its first {max_length}: its later notes, "
                    "or their ends, are left out. truncation=False keeps them all (a model reads at most "
                    "`max_symbolic_length` tokens; the pipeline cuts long recordings into windows)."
                )
            sequences = [ids[:kept] for ids in sequences]
        encoded = [
            self.prepare_for_model(
                ids,
                add_special_tokens=add_special_tokens,
                truncation=truncation,
                max_length=max_length,
                return_attention_mask=False,
            )
            for ids in sequences
        ]
        batch = self.pad(
            {"input_ids": [e["input_ids"] for e in encoded]},
            padding=padding,
            max_length=max_length if padding == "max_length" else None,
            return_attention_mask=return_attention_mask,
        )
        if not batched:
            batch = {key: value[0] for key, value in batch.items()}
        return BatchEncoding(batch, tensor_type=return_tensors, prepend_batch_axis=not batched and return_tensors is not None)

    def encode_midi(self, paths, **kwargs) -> BatchEncoding:
        """Tokenizes the notes of one MIDI file or a list of them, held by their sustain pedal as a recording holds
        them ([`read_midi_notes`]); keyword arguments as in [`encode_notes`]."""
        if isinstance(paths, (str, os.PathLike)):
            return self.encode_notes(read_midi_notes(paths), **kwargs)
        return self.encode_notes([read_midi_notes(p) for p in paths], **kwargs)

    def decode_notes(self, ids) -> list[Note] | list[list[Note]]:
        """Notes of one id sequence, or a list of note lists for a batch (a 2-D array or tensor, or a list of
        sequences); an encoding (what `encode_notes` and `encode_midi` return) is decoded from its `input_ids`."""
        if isinstance(ids, Mapping):
            ids = ids["input_ids"]
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        # A batch holds sequences (lists, arrays, tensors); a sequence may hold numpy or torch scalars (ndim 0).
        if len(ids) and (isinstance(ids[0], (list, tuple)) or getattr(ids[0], "ndim", 0) >= 1):
            return [self.ids_to_notes(np.asarray(sequence).tolist()) for sequence in ids]
        return self.ids_to_notes([int(i) for i in ids])


def release_restruck_keys(onset: np.ndarray, offset: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """
    Offsets with each note of a pitch ended no later than the next onset of that pitch (a re-struck key). Of notes
    struck together on one key, the longest keeps its length, whatever their order.
    """
    if len(onset) < 2:
        return offset
    order = np.lexsort((offset, onset, pitch))
    same_key_next = np.r_[pitch[order][1:] == pitch[order][:-1], False]
    next_onset = np.r_[onset[order][1:], 0]
    released = offset.copy()
    released[order[same_key_next]] = np.minimum(offset[order][same_key_next], next_onset[same_key_next])
    return released


def _ranges(counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(c) for each c in counts, without a Python loop."""
    counts = np.asarray(counts)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    return np.arange(total) - np.repeat(ends - counts, counts)


__all__ = ["MDPianoTokenizer"]
