import numpy as np
import pretty_midi
import pytest
from scipy import signal

from mdpiano.augmentation import FIXED_CONDITIONS, TRAIN_SOUNDFONTS
from mdpiano.rendering_mdpiano import render_midi

RATE = 22050


def waveform_similarity(a: np.ndarray, b: np.ndarray, max_lag: int = 200) -> float:
    """Largest normalised cross-correlation within `max_lag` samples: near 1 when two renderings play the same
    samples, far lower for two different pianos playing the same notes."""
    n = min(len(a), len(b))
    a, b = a[:n].astype(np.float64), b[:n].astype(np.float64)
    correlation = signal.correlate(a, b, mode="full", method="fft")[n - 1 - max_lag : n + max_lag]
    return float(correlation.max() / np.sqrt(np.dot(a, a) * np.dot(b, b)))


def test_the_new_pianos_share_no_samples_with_training_or_each_other(clip_midi):
    """`test-new-piano` must be a piano training never heard, and `validation-new-piano` one that neither training
    nor the test plays: their renderings are unlike every other piano's. The same check shows why `test-unseen` is
    not: FluidR3_GM plays the samples of the training FluidR3Mono_GM."""
    test_piano, validation_piano = (FIXED_CONDITIONS[name].soundfont for name in ("test-new-piano", "validation-new-piano"))
    pianos = {test_piano, validation_piano, "FluidR3_GM", *TRAIN_SOUNDFONTS}
    render = {name: render_midi(clip_midi, name, RATE, max_duration_s=6.0) for name in pianos}
    for new_piano in (test_piano, validation_piano):
        for other in pianos - {new_piano, "FluidR3_GM"}:
            assert waveform_similarity(render[new_piano], render[other]) < 0.5, (new_piano, other)
    assert waveform_similarity(render["FluidR3_GM"], render["FluidR3Mono_GM"]) > 0.99


@pytest.mark.parametrize("piano", ["FreePats_Grand", "FluidR3_GM"])
def test_renderings_start_where_the_midi_does(clip_midi, piano):
    notes = [note for instrument in pretty_midi.PrettyMIDI(str(clip_midi)).instruments for note in instrument.notes]
    first_onset, last_offset = min(n.start for n in notes), max(n.end for n in notes)
    audio = render_midi(clip_midi, piano, RATE)
    assert audio.dtype == np.float32 and np.abs(audio).max() == pytest.approx(0.9, rel=1e-5)
    first_sound = np.argmax(np.abs(audio) > 1e-3) / RATE  # TiMidity++ drops leading silence unless told not to
    assert first_sound == pytest.approx(first_onset, abs=0.02)
    assert len(audio) / RATE >= last_offset
    cropped = render_midi(clip_midi, piano, RATE, max_duration_s=3.0)
    assert len(cropped) == 3 * RATE


def test_a_broken_patch_is_an_error_not_silence(clip_midi, tmp_path):
    broken = tmp_path / "broken piano.pat"
    broken.write_bytes(b"not a patch" * 20)
    # TiMidity++ itself exits 0 and plays on without the instrument.
    with pytest.raises(RuntimeError, match="could not render with .*broken piano.pat: .*not an instrument"):
        render_midi(clip_midi, str(broken), RATE, max_duration_s=2.0)


def test_a_patch_without_timidity_names_the_package(clip_midi, monkeypatch):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(FileNotFoundError, match="install Debian's timidity"):
        render_midi(clip_midi, "FreePats_Grand", RATE, max_duration_s=2.0)


def test_render_emopia_looks_for_timidity_before_rendering(run_script, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")
    status, error = run_script("render_emopia.py", "--cache-dir", tmp_path, "--sets", "test-new-piano")
    assert status == 1 and "install Debian's timidity" in error and not (tmp_path / "audio").exists()


def two_tracks(pedal_down: bool) -> pretty_midi.PrettyMIDI:
    """Track A holds one note (with the sustain pedal down, or not); track B plays staccato low Cs after it."""
    midi = pretty_midi.PrettyMIDI()
    held, staccato = pretty_midi.Instrument(0), pretty_midi.Instrument(0)
    held.notes.append(pretty_midi.Note(80, 84, 0.0, 0.2))
    if pedal_down:
        held.control_changes.append(pretty_midi.ControlChange(64, 127, 0.0))
    staccato.notes += [pretty_midi.Note(100, 36, start, start + 0.1) for start in (1.0, 2.0)]
    midi.instruments += [held, staccato]
    return midi


def test_one_tracks_pedal_does_not_hold_another_tracks_notes():
    rate = 22050

    def ringing(midi):  # energy in the gap after the first staccato note, against the note's own
        audio = render_midi(midi, "FluidR3_GM", rate)
        note, gap = audio[int(1.0 * rate) : int(1.1 * rate)], audio[int(1.5 * rate) : int(1.9 * rate)]
        return np.sqrt(np.mean(gap**2) / np.mean(note**2))

    assert ringing(two_tracks(pedal_down=True)) < 0.2 and ringing(two_tracks(pedal_down=False)) < 0.2


def test_a_pedal_on_a_track_of_its_own_is_rendered(piano_on_several_tracks):
    split, single = piano_on_several_tracks
    np.testing.assert_array_equal(render_midi(split, "FluidR3_GM", RATE), render_midi(single, "FluidR3_GM", RATE))


def test_midi_without_piano_notes_is_an_error():
    drums = pretty_midi.PrettyMIDI()
    drums.instruments.append(pretty_midi.Instrument(0, is_drum=True))
    drums.instruments[0].notes.append(pretty_midi.Note(100, 36, 0.0, 0.5))
    for midi, piano in ((drums, "FluidR3_GM"), (pretty_midi.PrettyMIDI(), "FreePats_Grand")):
        with pytest.raises(ValueError, match="no piano notes to render"):
            render_midi(midi, piano, 22050)


def test_midi_that_renders_silent_is_an_error(tmp_path):
    """Notes too soft (or outside the instrument) to sound leave only 16-bit dither, which normalising to the peak
    would turn into full-scale noise: an error instead, naming the file."""
    whisper = pretty_midi.PrettyMIDI()
    whisper.instruments.append(pretty_midi.Instrument(0))
    whisper.instruments[0].notes.append(pretty_midi.Note(1, 60, 0.0, 0.5))
    with pytest.raises(ValueError, match="renders silent with FluidR3_GM.sf2"):
        render_midi(whisper, "FluidR3_GM", RATE)
    whisper.write(str(tmp_path / "whisper.mid"))
    with pytest.raises(ValueError, match=f"The MIDI file {tmp_path / 'whisper.mid'} renders silent"):
        render_midi(tmp_path / "whisper.mid", "FluidR3_GM", RATE)
    whisper.instruments[0].notes[0].velocity = 80  # the same note, played: music, peaking where asked
    assert np.abs(render_midi(whisper, "FluidR3_GM", RATE)).max() == pytest.approx(0.9, abs=1e-6)
