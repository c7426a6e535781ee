"""Piano notes: the common currency of the transcriber, the tokenizer and MIDI files."""

import os
from typing import NamedTuple, Sequence

import numpy as np


class Note(NamedTuple):
    """One piano note: onset and offset in seconds, MIDI pitch (0-127) and MIDI velocity (0-127)."""

    onset: float
    offset: float
    pitch: int
    velocity: int


class MidiReadError(ValueError):
    """A MIDI file that exists but cannot be parsed."""


def notes_to_array(notes) -> np.ndarray:
    """
    Converts notes to a float64 array of shape (N, 4) with columns onset, offset, pitch, velocity, sorted by onset
    then pitch.

    Accepts a sequence of [`Note`], of `(onset, offset, pitch, velocity)` tuples, of `pretty_midi.Note`, or an
    array of shape (N, 4).
    """
    if isinstance(notes, np.ndarray):
        array = np.asarray(notes, dtype=np.float64)
    elif len(notes) == 0:
        array = np.zeros((0, 4))
    elif hasattr(notes[0], "start") and hasattr(notes[0], "end"):  # pretty_midi.Note
        array = np.array([(n.start, n.end, n.pitch, n.velocity) for n in notes], dtype=np.float64)
    else:
        array = np.asarray(notes, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 4))
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"Notes must have shape (N, 4) = (onset, offset, pitch, velocity); got shape {array.shape}.")
    if not np.isfinite(array).all():
        raise ValueError("Notes contain NaN or infinite values.")
    onset, offset, pitch, velocity = array.T
    if (onset < 0).any() or (offset < onset).any():
        raise ValueError("Notes need 0 <= onset <= offset (seconds); some notes violate it.")
    if (pitch < 0).any() or (pitch > 127).any() or (velocity < 0).any() or (velocity > 127).any():
        raise ValueError("Note pitches and velocities must lie in the MIDI range 0-127.")
    return array[np.lexsort((pitch, onset))]


def array_to_notes(array: np.ndarray) -> list[Note]:
    """Inverse of [`notes_to_array`]: a list of [`Note`] with Python scalars."""
    return [Note(float(on), float(off), int(p), int(v)) for on, off, p, v in np.asarray(array).tolist()]


def window_notes(notes, start: float, duration: float) -> np.ndarray:
    """
    The notes of a window as an (N, 4) array in window time: notes starting in [start, start + duration), shifted
    by -start, offsets cut at the window's end.
    """
    array = notes if isinstance(notes, np.ndarray) and notes.ndim == 2 else notes_to_array(notes)
    array = array.astype(np.float64)  # compare in float64: float32 onsets would round the comparison with `start`
    array = array[(array[:, 0] >= start) & (array[:, 0] < start + duration)]
    array[:, :2] -= start
    array[:, 1] = np.minimum(array[:, 1], duration)
    return array


def is_note_batch(notes) -> bool:
    """Whether `notes` is a batch (a list of note sets) rather than one set (a list of notes or an (N, 4) array)."""
    if isinstance(notes, np.ndarray):
        return notes.ndim == 3
    if not isinstance(notes, (list, tuple)) or len(notes) == 0:
        return False
    first = notes[0]
    if isinstance(first, Note) or hasattr(first, "start"):  # a Note or a pretty_midi.Note
        return False
    return not (isinstance(first, (tuple, list, np.ndarray)) and len(first) == 4 and np.isscalar(first[0]))


def read_midi_notes(path: str | os.PathLike) -> list[Note]:
    """
    Reads every note of every non-drum instrument of a MIDI file with pretty_midi, sorted by onset then pitch.

    Raises:
        FileNotFoundError: the path does not exist.
        MidiReadError: the file is not a readable MIDI file.
    """
    import pretty_midi

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"MIDI file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"Expected a MIDI file, got a directory: {path}")
    try:
        midi = pretty_midi.PrettyMIDI(path)
    except Exception as error:  # mido and pretty_midi raise many types for malformed files
        raise MidiReadError(f"Could not parse {path} as a MIDI file ({type(error).__name__}: {error}).") from error
    notes = [n for instrument in midi.instruments if not instrument.is_drum for n in instrument.notes]
    return array_to_notes(notes_to_array(notes))


def notes_to_midi(notes: Sequence[Note], program: int = 0):
    """Builds a `pretty_midi.PrettyMIDI` with one piano instrument (General MIDI `program`) holding `notes`."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=program, name="Piano")
    for onset, offset, pitch, velocity in notes_to_array(notes).tolist():
        piano.notes.append(pretty_midi.Note(velocity=int(velocity), pitch=int(pitch), start=onset, end=offset))
    midi.instruments.append(piano)
    return midi


__all__ = ["Note", "MidiReadError", "array_to_notes", "is_note_batch", "notes_to_array", "notes_to_midi", "read_midi_notes", "window_notes"]
