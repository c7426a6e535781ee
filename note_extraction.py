"""
Note events from basic-pitch's frame and onset activations: the post-processing of basic-pitch's
`note_creation.output_to_notes_polyphonic` (Bittner et al., ICASSP 2022), computed without scanning a frame at a
time in Python, a full-matrix maximum per note or a float copy of the activations, and without importing librosa,
scipy.signal and mir_eval (what basic-pitch's module loads costs seconds at start-up). The notes equal basic-pitch's
own (tested), including their order and amplitudes.
"""

import numpy as np

MIDI_OFFSET = 21  # the first activation bin is A0
# basic-pitch's frame times: 22050 Hz, hop 256, 2-s windows of 172 frames fed 43844 samples (2 s less one hop).
_SAMPLE_RATE, _HOP, _WINDOW_FRAMES, _WINDOW_SAMPLES = 22050, 256, 172, 43844
_WINDOW_OFFSET_S = (_HOP / _SAMPLE_RATE) * (_WINDOW_FRAMES - _WINDOW_SAMPLES / _HOP) + 0.0018  # basic-pitch's value
_FIRST_SCAN = 64  # frames looked at before a note scan widens (most notes end within this)
_ROW_BLOCK = 4096  # frames per block of the elementwise passes over long inputs


def hz_to_midi(frequency: float) -> float:
    """MIDI pitch (A4 = 69 at 440 Hz) of a frequency in Hz."""
    return 12 * (np.log2(frequency) - np.log2(440.0)) + 69


def model_frames_to_time(n_frames: int) -> np.ndarray:
    """Times in seconds of the first `n_frames` activation frames; each 2-s window shifts them slightly, as
    basic-pitch's `model_frames_to_time` does."""
    frames = np.arange(n_frames)
    return (frames * _HOP).astype(int) / float(_SAMPLE_RATE) - _WINDOW_OFFSET_S * np.floor(frames / _WINDOW_FRAMES)


def _frame_rise(frames: np.ndarray, first: int, stop: int, n_diff: int) -> np.ndarray:
    """Rises of the frame activations into rows [first, stop) (first >= n_diff): the smallest rise over 1..`n_diff`
    frames, floored at zero; float64, as basic-pitch."""
    later = frames[first:stop].astype(np.float64)
    rise = later - frames[first - 1 : stop - 1]
    for lag in range(2, n_diff + 1):
        np.minimum(rise, later - frames[first - lag : stop - lag], out=rise)
    rise[rise < 0] = 0
    return rise


def inferred_onset_rows(onsets: np.ndarray, frames: np.ndarray, n_diff: int = 2):
    """
    basic-pitch's inferred onsets, the larger of the predicted onsets and rises in the frame activations over
    1..`n_diff` frames rescaled to the onsets' maximum, as a function `rows(first, stop)` giving rows [first, stop)
    ((rows, pitches) float64): long inputs never hold the whole float64 matrix. The first `n_diff` rows have no rise.
    """
    rows_total = len(frames)
    # The rises are computed twice, once here for their maximum: cheaper than holding a float64 matrix of them.
    largest = [np.max(_frame_rise(frames, first, min(first + _ROW_BLOCK, rows_total), n_diff))
               for first in range(n_diff, rows_total, _ROW_BLOCK)]  # fmt: skip
    largest_rise = np.max(largest) if largest else 0.0
    largest_onset = np.max(onsets)

    def rows(first: int, stop: int) -> np.ndarray:
        rise = np.zeros((stop - first, frames.shape[1]))
        if stop > n_diff:
            rise[max(first, n_diff) - first :] = _frame_rise(frames, max(first, n_diff), stop, n_diff)
        with np.errstate(invalid="ignore", divide="ignore"):  # no rise at all (silence) gives NaN, as in basic-pitch
            rise *= largest_onset
            rise /= largest_rise
        return np.maximum(onsets[first:stop], rise, out=rise)

    return rows


def _onset_peaks(onset_rows, n_frames: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """
    (frames, pitches) of the onsets that start notes: strict local maxima in time (never the first or last frame)
    at or above `threshold`, in row-major order, found a block of rows at a time from `onset_rows(first, stop)`.
    """
    found_frames, found_pitches = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for first in range(1, n_frames - 1, _ROW_BLOCK):
        stop = min(first + _ROW_BLOCK, n_frames - 1)
        rows = onset_rows(first - 1, stop + 1)
        middle = rows[1:-1]
        peak_frames, peak_pitches = np.nonzero((middle > rows[:-2]) & (middle > rows[2:]) & (middle >= threshold))
        found_frames.append(peak_frames + first)
        found_pitches.append(peak_pitches)
    return np.concatenate(found_frames), np.concatenate(found_pitches)


def _last_active(column: np.ndarray, used: np.ndarray, first: int, stop: int, threshold: float, tolerance: int) -> int:
    """
    Scanning `column[first:stop]` forwards, the index of the last frame not below `threshold` and not `used` before
    `tolerance` consecutive frames that are (or before `stop`); `first - 1` when there is none.
    """
    last, position, width = first - 1, first, _FIRST_SCAN
    while position < stop:
        end = min(stop, position + width)
        active_frames = ~(column[position:end] < threshold) & ~used[position:end]
        for active in (np.flatnonzero(active_frames) + position).tolist():
            if active - last > tolerance:
                return last
            last = active
        if end - 1 - last >= tolerance:
            return last
        position, width = end, width * 2
    return last


def _use(used: np.ndarray, start: int, stop: int, pitch: int) -> None:
    """Marks frames [start, stop) of a pitch bin and of its neighbours as used up."""
    used[start:stop, max(pitch - 1, 0) : pitch + 2] = True


def extract_notes(
    frames: np.ndarray,
    onsets: np.ndarray,
    onset_threshold: float,
    frame_threshold: float,
    min_note_length: int,
    infer_onsets: bool = True,
    max_frequency: float | None = None,
    min_frequency: float | None = None,
    melodia_trick: bool = True,
    energy_tolerance: int = 11,
) -> list[tuple[int, int, int, float]]:
    """
    Note events from activations, as basic-pitch's `output_to_notes_polyphonic`: notes start at peaks of the onset
    activations (above `onset_threshold`, latest first) and last while the frame activation stays above
    `frame_threshold` (allowing `energy_tolerance` frames below it); the energy they cover is used up. With
    `melodia_trick`, notes are then grown both ways from the strongest remaining frame activations.

    Args:
        frames: frame activations (n_frames, 88), float32 as the model gives them.
        onsets: onset activations (n_frames, 88).
        onset_threshold: minimum onset activation that starts a note, in (0, 1).
        frame_threshold: minimum frame activation that keeps a note sounding.
        min_note_length: notes of at most this many frames are dropped.
        infer_onsets: also start notes where the frame activations rise sharply.
        max_frequency, min_frequency: activations above / below these frequencies (Hz) are ignored.
        melodia_trick: basic-pitch's second pass over the remaining energy.
        energy_tolerance: frames below `frame_threshold` that end a note.

    Returns:
        `[(start frame, end frame, MIDI pitch, amplitude)]`: onset-driven notes in reverse time order, then those of
        the second pass; the amplitude is the mean frame activation over the note.
    """
    n_frames = len(frames)
    if n_frames == 0:
        return []
    if max_frequency is not None or min_frequency is not None:
        frames, onsets = np.array(frames), np.array(onsets)  # the caller's activations are left as they are
    for frequency, keep_below in ((max_frequency, True), (min_frequency, False)):
        if frequency is not None:
            index = int(np.round(hz_to_midi(frequency) - MIDI_OFFSET))
            band = np.s_[:, index:] if keep_below else np.s_[:, :index]
            onsets[band], frames[band] = 0, 0
    onset_rows = inferred_onset_rows(onsets, frames) if infer_onsets else lambda first, stop: onsets[first:stop]
    # basic-pitch compares float64 copies of the activations: with the threshold in float64, float32 rows compare alike.
    onset_frames, onset_pitches = _onset_peaks(onset_rows, n_frames, np.float64(onset_threshold))
    # basic-pitch zeroes the energy that notes use up in a float64 copy of the activations; here a boolean mask marks
    # it (a quarter of a float32 copy's memory, an eighth of float64's), and the activations are compared with a
    # float64 threshold, so each comparison is basic-pitch's.
    frame_threshold = np.float64(frame_threshold)
    used = np.zeros(frames.shape, dtype=bool)
    notes = []
    for start, pitch in zip(onset_frames[::-1].tolist(), onset_pitches[::-1].tolist()):
        if start >= n_frames - 1:
            continue
        end = _last_active(frames[:, pitch], used[:, pitch], start + 1, n_frames - 1, frame_threshold, energy_tolerance) + 1
        if end - start <= min_note_length:
            continue
        _use(used, start, end, pitch)
        notes.append((start, end, pitch + MIDI_OFFSET, np.mean(frames[start:end, pitch])))

    if melodia_trick and not _unused_nan(frames, used):  # basic-pitch skips its second pass when NaN energy remains
        notes.extend(_melodia_notes(frames, used, frame_threshold, min_note_length, energy_tolerance))
    return notes


def _unused_nan(frames: np.ndarray, used: np.ndarray) -> bool:
    """Whether some activation not used up is NaN."""
    nan = np.isnan(frames)
    return bool(nan.any()) and bool(nan[~used].any())


def _melodia_notes(frames, used, frame_threshold, min_note_length, energy_tolerance):
    """
    basic-pitch's second pass: while some remaining activation exceeds `frame_threshold`, take the largest (the
    first in row-major order among equals), follow its pitch forwards and backwards until `energy_tolerance` frames
    fall below the threshold, use up that stretch (and its neighbouring pitches), and keep it as a note if long
    enough. Remaining activations only ever drop to zero, so the largest one is the next still-unused candidate of
    a single sort.
    """
    n_frames, n_pitches = frames.shape
    flat_used = used.reshape(-1)
    above = frames > frame_threshold
    above[used] = False
    candidates = np.flatnonzero(above)
    del above
    candidates = candidates[np.lexsort((candidates, -frames.flat[candidates]))].tolist()
    notes = []
    for index in candidates:
        if flat_used[index]:
            continue  # used up by an earlier note
        middle, pitch = divmod(index, n_pitches)
        used[middle, pitch] = True
        column, column_used = frames[:, pitch], used[:, pitch]
        end = _last_active(column, column_used, middle + 1, n_frames - 1, frame_threshold, energy_tolerance)
        forward_stop = max(middle + 1, min(end + energy_tolerance + 1, n_frames - 1))
        # Backwards: the same scan over the reversed column, down to frame 1.
        reversed_middle = n_frames - 1 - middle
        reversed_start = _last_active(column[::-1], column_used[::-1], reversed_middle + 1, n_frames - 1, frame_threshold,
                                      energy_tolerance)  # fmt: skip
        backward_stop = max(reversed_middle + 1, min(reversed_start + energy_tolerance + 1, n_frames - 1))
        start = n_frames - 1 - reversed_start
        _use(used, middle + 1, forward_stop, pitch)
        _use(used, n_frames - backward_stop, middle, pitch)
        if end - start <= min_note_length:
            continue
        notes.append((start, end, pitch + MIDI_OFFSET, np.mean(frames[start:end, pitch])))
    return notes


__all__ = ["extract_notes", "hz_to_midi", "inferred_onset_rows", "model_frames_to_time"]
