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


# Raised whenever `read_midi_notes` reads some file differently (2: a channel's pedal acts across its tracks), so
# that caches of its notes, which carry it, are read again rather than reused.
MIDI_READER_VERSION = 2


def notes_to_array(notes) -> np.ndarray:
    """
    Converts notes to a float64 array of shape (N, 4) with columns onset, offset, pitch, velocity, sorted by onset
    then pitch.

    Accepts a sequence of [`Note`], of `(onset, offset, pitch, velocity)` tuples, of `pretty_midi.Note`, or an
    array of shape (N, 4).
    """
    if isinstance(notes, (str, bytes, os.PathLike)):
        raise ValueError(f"Got {notes!r} where notes were expected: read a MIDI file with `read_midi_notes(path)` "
                         "(or tokenize it with `encode_midi`).")  # fmt: skip
    if _is_one_note(notes):
        raise ValueError(f"Got one note, {notes!r}, where a set of notes was expected: pass a list, [note].")
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
    if (pitch != np.round(pitch)).any():
        raise ValueError(f"Note pitches must be whole MIDI note numbers; got {pitch[pitch != np.round(pitch)][0]:g}.")
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
    if _is_one_note(notes):
        return False  # refused by `notes_to_array`, which says what to pass
    first = notes[0]
    if isinstance(first, Note) or hasattr(first, "start"):  # a Note or a pretty_midi.Note
        return False
    # A batch's items are sets of notes (empty, or holding notes); a set's items are notes, whose items are numbers.
    return isinstance(first, (tuple, list, np.ndarray)) and not (len(first) > 0 and np.isscalar(first[0]))


def _is_one_note(notes) -> bool:
    """A lone note, `Note(...)` or an (onset, offset, pitch, velocity) tuple, rather than a set of notes."""
    return isinstance(notes, Note) or (
        isinstance(notes, tuple) and len(notes) == 4 and all(np.isscalar(value) for value in notes)
    )


def load_midi(path: str | os.PathLike):
    """
    Parses a MIDI file into a `pretty_midi.PrettyMIDI` in which each controller change (the sustain pedal above all)
    belongs to its channel, as a synthesizer applies it, not to its track.

    pretty_midi gives a controller change only to the notes of its own track and channel, and drops it on a track
    without notes. Piano files often keep the pedal on a track of its own, or the left hand on another track than
    the pedal (notation programs write a track per staff): read track by track, those notes would lose the pedal,
    in the symbolic domain and in a rendering alike. Where a channel's notes and controllers lie on several tracks,
    the tracks are merged first (`mido.merge_tracks`), and the instruments are then one per channel and program.

    Raises:
        FileNotFoundError: the path does not exist.
        IsADirectoryError: the path is a folder.
        MidiReadError: the file is not a readable MIDI file.
    """
    import mido
    import pretty_midi

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"MIDI file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"Expected a MIDI file, got a directory: {path}")
    try:
        midi_file = mido.MidiFile(path)
        # Type 2 files hold independent sequences, not parts of one: they stay as they are.
        if midi_file.type == 1 and _channels_span_tracks(midi_file.tracks):
            midi_file.tracks = [mido.merge_tracks(midi_file.tracks)]
            midi_file.type = 0
        return pretty_midi.PrettyMIDI(mido_object=midi_file)
    except Exception as error:  # mido and pretty_midi raise many types for malformed files
        raise MidiReadError(f"Could not parse {path} as a MIDI file ({type(error).__name__}: {error}).") from error


def _channels_span_tracks(tracks) -> bool:
    """Whether a channel with notes has its notes or controller changes on more than one track."""
    tracks_of_channel, channels_with_notes = {}, set()
    for index, track in enumerate(tracks):
        for message in track:
            if message.type == "note_on" or message.type == "control_change":
                tracks_of_channel.setdefault(message.channel, set()).add(index)
                if message.type == "note_on":
                    channels_with_notes.add(message.channel)
    return any(len(tracks_of_channel[channel]) > 1 for channel in channels_with_notes)


def read_midi_notes(path: str | os.PathLike, sustain_pedal: bool = True) -> list[Note]:
    """
    Reads every note of every non-drum instrument of a MIDI file ([`load_midi`]), sorted by onset then pitch.

    Args:
        path: the MIDI file.
        sustain_pedal: apply each channel's sustain pedal (controller 64, down at values of 64 and above) to its
            notes, as a piano does: a key released while the pedal is down sounds until the pedal is lifted, or
            until the key is struck again. pretty_midi's notes end at the key release; a recording of the
            performance, and so its transcription, holds them. Performance MIDI (EMOPIA, MAESTRO,
            GiantMIDI-Piano) pedals throughout, so the symbolic branch, which learns from transcriptions, reads
            MIDI input pedalled.

    Raises:
        FileNotFoundError: the path does not exist.
        MidiReadError: the file is not a readable MIDI file.
    """
    midi = load_midi(path)
    arrays = []
    for instrument in midi.instruments:
        if instrument.is_drum or not instrument.notes:
            continue
        notes = notes_to_array(instrument.notes)
        if sustain_pedal:
            pedal = [(change.time, change.value) for change in instrument.control_changes if change.number == 64]
            notes = apply_sustain_pedal(notes, pedal, end_time=midi.get_end_time())
        arrays.append(notes)
    return array_to_notes(notes_to_array(np.concatenate(arrays)) if arrays else np.zeros((0, 4)))


SUSTAIN_PEDAL_THRESHOLD = 64  # MIDI 1.0: controller 64 values 0-63 are pedal up, 64-127 pedal down


def sustain_intervals(pedal_changes, end_time: float) -> np.ndarray:
    """
    The spans in which the sustain pedal is down, (K, 2) seconds, from `(time, controller 64 value)` changes in any
    order (changes at one time keep their given order); a pedal never lifted is held until `end_time`.
    """
    intervals, pressed_at = [], None
    for time, value in sorted(pedal_changes, key=lambda change: change[0]):  # stable sort
        if value >= SUSTAIN_PEDAL_THRESHOLD and pressed_at is None:
            pressed_at = time
        elif value < SUSTAIN_PEDAL_THRESHOLD and pressed_at is not None:
            intervals.append((pressed_at, time))
            pressed_at = None
    if pressed_at is not None:
        intervals.append((pressed_at, max(pressed_at, end_time)))
    return np.array(intervals, dtype=np.float64).reshape(-1, 2)


def apply_sustain_pedal(notes, pedal_changes, end_time: float | None = None) -> np.ndarray:
    """
    Notes as the sustain pedal holds them: a key released while the pedal is down sounds until the pedal is lifted
    or the key is struck again, whichever comes first.

    Args:
        notes: one instrument's notes, anything [`notes_to_array`] accepts, (N, 4): onset, offset, pitch, velocity.
        pedal_changes: `(time, value)` of its controller 64 messages.
        end_time: when a pedal never lifted lets go; by default the last note's end or pedal change.

    Returns:
        `np.ndarray` of shape (N, 4), sorted by onset then pitch: the notes, their offsets extended.
    """
    notes = notes_to_array(notes).copy()
    if end_time is None:
        end_time = max([*notes[:, 1], *(time for time, _ in pedal_changes)], default=0.0)
    intervals = sustain_intervals(pedal_changes, end_time)
    if len(notes) == 0 or len(intervals) == 0:
        return notes
    onsets, offsets, pitches = notes[:, 0], notes[:, 1], notes[:, 2]
    # The last pedal press strictly before each key release: a damper already falling as the pedal goes down
    # is not caught.
    span = np.searchsorted(intervals[:, 0], offsets, side="left") - 1
    pedal_up = intervals[np.maximum(span, 0), 1]
    released = np.where((span >= 0) & (offsets < pedal_up), pedal_up, offsets)
    # The next strike of the same key, later than the note's own onset, cuts its sustained sound short.
    next_strike = np.full(len(notes), np.inf)
    for pitch in np.unique(pitches):
        key = np.flatnonzero(pitches == pitch)  # in onset order
        later = np.searchsorted(onsets[key], onsets[key], side="right")
        has_later = later < len(key)
        next_strike[key[has_later]] = onsets[key][later[has_later]]
    # A key struck again while still down is left as it was read (the tokenizer releases it at the new onset).
    notes[:, 1] = np.maximum(offsets, np.minimum(released, next_strike))
    return notes


def notes_to_midi(notes: Sequence[Note], program: int = 0):
    """Builds a `pretty_midi.PrettyMIDI` with one piano instrument (General MIDI `program`) holding `notes`."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=program, name="Piano")
    for onset, offset, pitch, velocity in notes_to_array(notes).tolist():
        piano.notes.append(pretty_midi.Note(velocity=int(velocity), pitch=int(pitch), start=onset, end=offset))
    midi.instruments.append(piano)
    return midi


__all__ = [
    "MidiReadError",
    "Note",
    "apply_sustain_pedal",
    "array_to_notes",
    "is_note_batch",
    "load_midi",
    "notes_to_array",
    "notes_to_midi",
    "read_midi_notes",
    "sustain_intervals",
    "window_notes",
]
