import numpy as np
import pytest

from mdpiano.note_statistics import MAJOR_PROFILE, NOTE_STATISTICS, key_fits, note_statistics, statistics_shift


def chord_notes(pitches, seconds=1.0, velocity=80):
    """Each pitch held for `seconds`, one after another."""
    return np.array([(i * seconds, (i + 1) * seconds, pitch, velocity) for i, pitch in enumerate(pitches)], dtype=float)


def test_key_fits_tell_major_from_minor():
    c_major = chord_notes([60, 62, 64, 65, 67, 69, 71, 72, 64, 67, 60])
    a_harmonic_minor = chord_notes([57, 59, 60, 62, 64, 65, 68, 69, 60, 64, 57, 68])
    major_fit, minor_fit = key_fits(np.bincount(c_major[:, 2].astype(int) % 12, weights=c_major[:, 1] - c_major[:, 0], minlength=12))
    assert major_fit > minor_fit
    major_fit, minor_fit = key_fits(np.bincount(a_harmonic_minor[:, 2].astype(int) % 12, minlength=12).astype(float))
    assert minor_fit > major_fit
    # transposition-invariant: the best fit over the 12 keys
    assert key_fits(np.roll(MAJOR_PROFILE, 5))[0] == pytest.approx(1.0)
    assert key_fits(np.ones(12)) == (0.0, 0.0) and key_fits(np.zeros(12)) == (0.0, 0.0)


def test_note_statistics_of_a_small_clip():
    notes = np.array([[0.0, 0.5, 60, 40], [0.5, 4.5, 64, 80], [1.0, 1.5, 67, 120]])  # the long note counts as 2 s
    statistics = dict(zip(NOTE_STATISTICS, note_statistics(notes, duration_s=6.0)))
    assert statistics["notes_per_second"] == pytest.approx(0.5)
    assert statistics["mean_velocity"] == pytest.approx(80) and statistics["velocity_std"] == pytest.approx(np.std([40, 80, 120]))
    assert statistics["mean_pitch"] == pytest.approx(191 / 3) and statistics["pitch_std"] == pytest.approx(np.std([60, 64, 67]))
    assert statistics["mean_duration_s"] == pytest.approx(1.0) and statistics["mean_polyphony"] == pytest.approx(3.0 / 6.0)
    # without a duration, the clip lasts from its first note's start to its last note's end: leading silence
    # (here 30 s of it) changes nothing
    assert dict(zip(NOTE_STATISTICS, note_statistics(notes)))["notes_per_second"] == pytest.approx(3 / 4.5)
    late = notes + [30.0, 30.0, 0, 0]
    np.testing.assert_allclose(note_statistics(late), note_statistics(notes))


def test_note_statistics_of_no_notes_and_bad_durations():
    assert note_statistics(np.zeros((0, 4)), duration_s=10.0).tolist() == [0.0] * len(NOTE_STATISTICS)
    with pytest.raises(ValueError, match="positive duration"):
        note_statistics(np.array([[0.0, 0.5, 60, 40]]), duration_s=0.0)


def test_statistics_shift_measures_offset_in_standard_deviations_and_correlation():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(40, 3))
    other = np.stack([reference[:, 0] + 2 * reference[:, 0].std(),  # shifted by two of its standard deviations
                      -reference[:, 1],  # mirrored
                      np.full(40, 5.0)], axis=1)  # fmt: skip
    shift, correlation = statistics_shift(reference, other)
    assert shift[0] == pytest.approx(2.0) and correlation[0] == pytest.approx(1.0)
    assert shift[1] == pytest.approx(-2 * reference[:, 1].mean() / reference[:, 1].std()) and correlation[1] == pytest.approx(-1.0)
    assert np.isfinite(shift[2]) and np.isnan(correlation[2])  # a constant column has no correlation
    assert np.isnan(statistics_shift(other, reference)[0][2])  # nor a shift in its own units
    with pytest.raises(ValueError, match="same shape"):
        statistics_shift(reference, other[:-1])
