"""Reading MIDI notes: the sustain pedal holds released keys as a piano does."""

import numpy as np
import pretty_midi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdpiano import read_midi_notes
from mdpiano.notes_mdpiano import apply_sustain_pedal, sustain_intervals


def write_midi(path, tracks):
    """tracks: [(notes [(onset, offset, pitch)], pedal [(time, value)], is_drum)] -> a MIDI file at `path`."""
    midi = pretty_midi.PrettyMIDI()
    for notes, pedal, is_drum in tracks:
        instrument = pretty_midi.Instrument(program=0, is_drum=is_drum)
        instrument.notes = [pretty_midi.Note(velocity=80, pitch=p, start=on, end=off) for on, off, p in notes]
        instrument.control_changes = [pretty_midi.ControlChange(number=64, value=v, time=t) for t, v in pedal]
        midi.instruments.append(instrument)
    midi.write(str(path))
    return path


def offsets_by_pitch_and_onset(notes):
    return {(note.pitch, round(note.onset, 3)): round(note.offset, 3) for note in notes}


def test_a_key_released_under_the_pedal_sounds_until_the_pedal_is_lifted(tmp_path):
    path = write_midi(tmp_path / "pedal.mid", [(
        [(0.0, 0.5, 60), (0.0, 0.2, 64), (1.0, 1.2, 67), (2.5, 2.8, 72)],
        [(0.3, 127), (2.0, 0)],  # down from 0.3 s (after E4's release at 0.2 s) to 2.0 s
        False,
    )])  # fmt: skip
    assert offsets_by_pitch_and_onset(read_midi_notes(path)) == {
        (60, 0.0): 2.0,  # released at 0.5 s under the pedal
        (64, 0.0): 0.2,  # released before the pedal went down
        (67, 1.0): 2.0,
        (72, 2.5): 2.8,  # played after the pedal was lifted
    }
    assert offsets_by_pitch_and_onset(read_midi_notes(path, sustain_pedal=False)) == {
        (60, 0.0): 0.5, (64, 0.0): 0.2, (67, 1.0): 1.2, (72, 2.5): 2.8,
    }  # fmt: skip


def test_striking_a_held_key_again_ends_its_sustained_sound(tmp_path):
    path = write_midi(tmp_path / "restrike.mid", [([(0.0, 0.3, 60), (1.0, 1.3, 60)], [(0.1, 100), (3.0, 0)], False)])
    assert offsets_by_pitch_and_onset(read_midi_notes(path)) == {(60, 0.0): 1.0, (60, 1.0): 3.0}


def test_a_pedal_never_lifted_holds_until_the_end_of_the_file(tmp_path):
    path = write_midi(tmp_path / "held.mid", [([(0.0, 0.3, 60), (2.0, 4.0, 48)], [(0.1, 127)], False)])
    assert offsets_by_pitch_and_onset(read_midi_notes(path)) == {(60, 0.0): 4.0, (48, 2.0): 4.0}


def test_the_pedal_is_down_from_value_64(tmp_path):
    path = write_midi(tmp_path / "half.mid", [([(0.0, 0.3, 60), (1.0, 1.3, 62)], [(0.1, 63), (0.5, 0), (0.9, 64), (2.0, 0)], False)])
    assert offsets_by_pitch_and_onset(read_midi_notes(path)) == {(60, 0.0): 0.3, (62, 1.0): 2.0}


def test_each_channel_has_its_own_pedal_and_drums_are_left_out(tmp_path):
    # pretty_midi writes each instrument on a channel of its own (drums on channel 9)
    path = write_midi(tmp_path / "tracks.mid", [
        ([(0.0, 0.3, 60)], [(0.1, 127), (2.0, 0)], False),
        ([(0.0, 0.3, 48)], [], False),
        ([(0.0, 0.1, 36)], [(0.0, 127), (5.0, 0)], True),
    ])  # fmt: skip
    assert offsets_by_pitch_and_onset(read_midi_notes(path)) == {(48, 0.0): 0.3, (60, 0.0): 2.0}


def test_a_channels_pedal_holds_its_notes_on_every_track(piano_on_several_tracks):
    split, single = piano_on_several_tracks
    expected = {
        (72, 0.0): 2.0,  # right hand, released under the pedal
        (48, 0.0): 2.0,  # left hand, on a track without the pedal
        (43, 1.0): 2.0,
        (76, 2.5): 2.8,  # after the lift
        (60, 0.5): 0.8,  # channel 1: not channel 0's pedal
    }
    assert offsets_by_pitch_and_onset(read_midi_notes(split)) == expected
    assert read_midi_notes(split) == read_midi_notes(single)
    assert offsets_by_pitch_and_onset(read_midi_notes(split, sustain_pedal=False)) == {
        (72, 0.0): 0.5, (48, 0.0): 0.4, (43, 1.0): 1.2, (76, 2.5): 2.8, (60, 0.5): 0.8,
    }  # fmt: skip


def test_sustain_intervals_pair_presses_with_releases():
    changes = [(2.0, 0), (0.5, 127), (1.0, 100), (3.0, 90), (4.0, 10), (6.0, 127)]  # out of order; 1.0 re-presses
    np.testing.assert_array_equal(sustain_intervals(changes, end_time=7.0), [[0.5, 2.0], [3.0, 4.0], [6.0, 7.0]])
    assert sustain_intervals([], end_time=1.0).shape == (0, 2)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 20), st.integers(60, 63)), min_size=1, max_size=30),
    st.lists(st.tuples(st.integers(0, 60), st.sampled_from([0, 63, 64, 127])), max_size=10),
)
def test_pedalled_notes_match_a_note_by_note_reading(raw_notes, pedal):
    """On a 0.1-s grid, against the rule applied to each note alone: a key released while the pedal is down (pressed
    before the release) sounds until the pedal's lift or the key's next strike, never less than it was held."""
    notes = np.array([(on / 10, (on + length) / 10, pitch, 64) for on, length, pitch in raw_notes], dtype=np.float64)
    changes = [(time / 10, value) for time, value in pedal]
    held = apply_sustain_pedal(notes, changes, end_time=10.0)
    raw = notes[np.lexsort((notes[:, 2], notes[:, 0]))]
    np.testing.assert_array_equal(held[:, [0, 2, 3]], raw[:, [0, 2, 3]])
    intervals = sustain_intervals(changes, end_time=10.0)
    for (onset, release, pitch, _), end in zip(raw, held[:, 1]):
        lifts = [stop for start, stop in intervals if start < release < stop]
        later_strikes = [other for other in raw[raw[:, 2] == pitch, 0] if other > onset]
        assert end == (max(release, min([lifts[0], *later_strikes])) if lifts else release)


def test_emopia_notes_are_only_lengthened(emopia_midis):
    lengthened = 0
    for path in emopia_midis[:20]:
        raw = np.array(read_midi_notes(path, sustain_pedal=False))
        held = np.array(read_midi_notes(path))
        np.testing.assert_array_equal(held[:, [0, 2, 3]], raw[:, [0, 2, 3]])
        assert (held[:, 1] >= raw[:, 1]).all()
        lengthened += int((held[:, 1] > raw[:, 1]).sum())
    assert lengthened > 0


def test_an_unreadable_midi_file_is_named(tmp_path):
    path = tmp_path / "broken.mid"
    path.write_bytes(b"MThd not really")
    with pytest.raises(ValueError, match="broken.mid"):
        read_midi_notes(path)
