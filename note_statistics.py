"""Summary statistics of a clip's notes: the inputs of the reference baseline (`scripts/baseline.py`).

A handful of numbers that music psychology ties to perceived emotion (mode and tonal clarity, density, loudness,
register, articulation), read off the same notes the symbolic branch reads. A linear classifier on them says how
much of the task simple note statistics already solve, so the networks' figures can be read against it.
"""

import numpy as np

from .notes_mdpiano import notes_to_array

# Krumhansl & Kessler (1982) probe-tone ratings of the 12 pitch classes in C major and C minor, as tabulated in
# Krumhansl, "Cognitive Foundations of Musical Pitch" (1990), used by the Krumhansl-Schmuckler key-finding algorithm.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

NOTE_STATISTICS = (
    "major_key_fit",  # correlation of the duration-weighted pitch-class histogram with the best-fitting major key
    "minor_key_fit",  # ... with the best-fitting minor key
    "notes_per_second",
    "mean_velocity",
    "velocity_std",
    "mean_pitch",
    "pitch_std",
    "mean_duration_s",  # durations capped at 2 s: held pedal notes would otherwise dominate
    "mean_polyphony",  # summed note durations (capped as above) over the clip's duration
)
MAX_NOTE_DURATION_S = 2.0


def _unit_key_profiles(profile: np.ndarray) -> np.ndarray:
    """The profile in each of the 12 keys (rows), centred and scaled to unit length: dot products are correlations."""
    keys = np.stack([np.roll(profile, tonic) for tonic in range(12)])
    keys -= keys.mean(axis=1, keepdims=True)
    return keys / np.linalg.norm(keys, axis=1, keepdims=True)


MAJOR_KEYS, MINOR_KEYS = _unit_key_profiles(MAJOR_PROFILE), _unit_key_profiles(MINOR_PROFILE)


def key_fits(pitch_class_weights: np.ndarray) -> tuple[float, float]:
    """
    The best correlation of a 12-bin pitch-class histogram with the major profile in any of the 12 keys, and with
    the minor profile (Krumhansl-Schmuckler key finding); 0.0 for a flat or empty histogram.
    """
    if np.ptp(pitch_class_weights) == 0:
        return 0.0, 0.0
    centred = pitch_class_weights - pitch_class_weights.mean()
    unit = centred / np.linalg.norm(centred)
    return float((MAJOR_KEYS @ unit).max()), float((MINOR_KEYS @ unit).max())


def note_statistics(notes, duration_s: float | None = None) -> np.ndarray:
    """
    The [`NOTE_STATISTICS`] of one clip.

    Args:
        notes: the clip's notes, anything [`notes_to_array`] accepts ((N, 4): onset, offset, pitch, velocity).
        duration_s: the clip's length; when not given, the time its notes span, from the first onset to the last
            offset (silence before the music, or a recording's leading pause, would dilute the rates).

    Returns:
        `np.ndarray` of shape (len(NOTE_STATISTICS),), float64; all zeros for a clip without notes.
    """
    notes = notes_to_array(notes)
    if len(notes) == 0:
        return np.zeros(len(NOTE_STATISTICS))
    onsets, offsets, pitches, velocities = notes.T
    durations = np.clip(offsets - onsets, 0.0, MAX_NOTE_DURATION_S)
    duration_s = float(duration_s if duration_s is not None else offsets.max() - onsets.min())
    if duration_s <= 0:
        raise ValueError(f"A clip with notes needs a positive duration, got {duration_s}.")
    pitch_classes = np.bincount(pitches.astype(int) % 12, weights=durations, minlength=12)
    return np.array([
        *key_fits(pitch_classes),
        len(notes) / duration_s,
        velocities.mean(),
        velocities.std(),
        pitches.mean(),
        pitches.std(),
        durations.mean(),
        durations.sum() / duration_s,
    ])  # fmt: skip


def statistics_shift(reference: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    How one source's note statistics differ from another's on the same clips (e.g. transcriptions against the MIDI).

    Args:
        reference: (clips, statistics) array, e.g. the clips' MIDI statistics.
        other: array of the same shape, the same clips in the same order.

    Returns:
        The mean of `other - reference` in units of the reference's standard deviation across clips, and the Pearson
        correlation across clips between the two; each of shape (statistics,), NaN where a column is constant.
    """
    reference, other = np.asarray(reference, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if reference.shape != other.shape or reference.ndim != 2 or len(reference) < 2:
        raise ValueError(f"Two (clips, statistics) arrays of the same shape and at least 2 clips are needed, got "
                         f"{reference.shape} and {other.shape}.")  # fmt: skip
    reference_sd, other_sd = reference.std(axis=0), other.std(axis=0)
    covariance = ((reference - reference.mean(axis=0)) * (other - other.mean(axis=0))).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(reference_sd > 0, (other - reference).mean(axis=0) / reference_sd, np.nan)
        correlation = np.where((reference_sd > 0) & (other_sd > 0), covariance / (reference_sd * other_sd), np.nan)
    return shift, correlation


__all__ = ["MAJOR_PROFILE", "MINOR_PROFILE", "NOTE_STATISTICS", "key_fits", "note_statistics", "statistics_shift"]
