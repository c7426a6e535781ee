"""Analysis windows of a recording: where they start, and cutting them from features and notes that stream in."""

import numpy as np


def window_starts(duration_s: float, window_s: float, stride_s: float, frames_per_second: float | None = None) -> list[float]:
    """
    Start times of analysis windows over a recording: one window when it fits, else windows every `stride_s` and a
    last one ending exactly at the end, so every window is full length and the whole recording is covered.

    The last window is left out when it is the last regular one again: when both start on the same frame (windows
    are cut on frames, `frames_per_second` of them), or, without a frame rate, when they differ by rounding alone.
    A recording a few samples longer than a multiple of the stride would otherwise count its last window twice.
    """
    if duration_s <= window_s:
        return [0.0]
    starts = [float(s) for s in np.arange(0.0, duration_s - window_s, stride_s)]
    last = duration_s - window_s
    if frames_per_second is None:
        repeated = np.isclose(last, starts[-1], rtol=0.0, atol=1e-9)
    else:
        repeated = round(last * frames_per_second) == round(starts[-1] * frames_per_second)
    return starts if repeated else [*starts, last]


def voting_windows(num_notes) -> np.ndarray:
    """
    Which of a recording's windows enter its average: those in which the transcriber found notes, once any window
    has them. A window without notes (silence, a pause, noise) gives the network nothing to judge, and its fixed
    answer to empty input would otherwise outvote the music; a recording with no notes at all, or a model that reads
    no notes (`None` counts), averages every window.

    Args:
        num_notes: each window's note count, or `None` for each when the model reads no notes.

    Returns:
        `np.ndarray` of bools, one per window.
    """
    counts = np.array([-1 if n is None else n for n in num_notes])
    has_notes = counts > 0
    return has_notes if has_notes.any() else np.ones(len(counts), dtype=bool)


def notes_in_windows(notes: np.ndarray, starts, window_s: float, frames_per_second: float) -> list[int]:
    """The number of notes starting in each window (starts snapped to frames, as windows are cut): what
    [`WindowCutter.cut`] counts."""
    # float64, as `window_notes` compares: float32 onsets on a window's edge would otherwise fall the other way
    onsets = np.asarray(notes, dtype=np.float64)[:, 0] if len(notes) else np.zeros(0)
    snapped = [round(start * frames_per_second) / frames_per_second for start in starts]
    return [int(((onsets >= start) & (onsets < start + window_s)).sum()) for start in snapped]


class WindowCutter:
    """
    Cuts a recording's analysis windows (those of [`window_starts`]) from its features and notes while they stream
    in. A window is cut once the recording is known to run past its end and its frames and notes are final; what
    no later window needs is then dropped, so memory does not grow with the recording's length. The inputs of each
    window equal those cut from the whole recording's features and notes.
    """

    def __init__(self, processor, stride_s: float, use_acoustic: bool, use_symbolic: bool, keep_notes: bool = False):
        fe = processor.feature_extractor
        self.processor, self.stride_s, self.window_s = processor, stride_s, fe.chunk_length_s
        self.frames_per_second = fe.frames_per_second
        self.features = np.zeros((0, fe.feature_size), np.float32) if use_acoustic else None
        self.first_frame = 0  # global index of self.features[0]
        self.notes = np.zeros((0, 4)) if use_symbolic else None
        self.kept_notes = [] if keep_notes and use_symbolic else None
        self.total_notes = 0
        self.next_regular = 0  # index k of the next window starting at k * stride_s

    def add(self, features: np.ndarray | None = None, notes: np.ndarray | None = None) -> None:
        """Appends final frames (unnormalised) and final notes ((N, 4), in onset order)."""
        if self.features is not None and features is not None and len(features):
            self.features = np.concatenate([self.features, features])
        if self.notes is not None and notes is not None and len(notes):
            self.notes = np.concatenate([self.notes, notes])
            self.total_notes += len(notes)
            if self.kept_notes is not None:
                self.kept_notes.append(notes)

    def ready(self, seconds_so_far: float, notes_final_s: float) -> list[float]:
        """Starts of the windows that can be cut now, in order (each is then cut with [`cut`])."""
        starts = []
        while True:
            regular_s = self.next_regular * self.stride_s
            start = self._snap(regular_s)
            # Until the recording runs a frame past this window, it may end before the window does, or the window
            # may turn out to be the last one (`window_starts`' last window, on the same frame), cut at the end.
            if not round((seconds_so_far - self.window_s) * self.frames_per_second) > round(regular_s * self.frames_per_second):
                return starts
            last_frame = round(start * self.frames_per_second) + self.processor.feature_extractor.nb_max_frames
            frames_ready = self.features is None or self.first_frame + len(self.features) >= last_frame
            if not (frames_ready and (self.notes is None or notes_final_s >= start + self.window_s)):
                return starts
            starts.append(start)
            self.next_regular += 1

    def remaining(self, duration_s: float) -> list[float]:
        """Starts of the windows not cut yet, once the recording has ended after `duration_s` seconds."""
        starts = window_starts(duration_s, self.window_s, self.stride_s, self.frames_per_second)
        return [self._snap(start) for start in starts[self.next_regular :]]

    def cut(self, start: float) -> tuple[dict, int]:
        """The model inputs of the window starting at `start` (from [`ready`] or [`remaining`], in order), and the
        number of notes starting in it. Frames and notes before it are dropped."""
        window = self.crop(start)
        in_window = 0 if self.notes is None else int((self.notes[:, 0] < start + self.window_s).sum())
        return self.processor.window_inputs([window]), in_window

    def crop(self, start: float) -> tuple:
        """The window starting at `start` as [`MDPianoProcessor.window_inputs`] takes it: `(features, notes, start,
        index of the first frame held)`. Frames and notes before it are dropped."""
        first = round(start * self.frames_per_second)
        if self.features is not None:
            self.features = self.features[max(0, first - self.first_frame) :]
            self.first_frame = max(self.first_frame, first)
        if self.notes is not None:
            self.notes = self.notes[self.notes[:, 0] >= first / self.frames_per_second]
        return self.features, self.notes, start, self.first_frame

    def all_notes(self) -> np.ndarray | None:
        """Every note of the recording (with `keep_notes`), or `None`."""
        return None if self.kept_notes is None else np.concatenate([np.zeros((0, 4))] + self.kept_notes)

    def _snap(self, start: float) -> float:
        return round(start * self.frames_per_second) / self.frames_per_second  # window_inputs snaps to frames too


__all__ = ["WindowCutter", "notes_in_windows", "voting_windows", "window_starts"]
