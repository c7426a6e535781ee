"""Automatic piano transcription with basic-pitch's bundled ONNX model (Bittner et al., ICASSP 2022)."""

import contextlib
import ctypes
import functools
import hashlib
import importlib
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .audio_mdpiano import stream_audio
from .note_extraction import extract_notes, model_frames_to_time
from .notes_mdpiano import Note, array_to_notes

# basic-pitch's model: 22050 Hz input, 2-s windows of 43844 samples, 86 frames per second (hop 256).
BASIC_PITCH_SAMPLE_RATE = 22050
BASIC_PITCH_WINDOW = 43844
BASIC_PITCH_HOP = 256
# basic-pitch's own inference overlaps windows by 30 frames and drops half of the overlap on each side.
OVERLAP_FRAMES = 30
OVERLAP_SAMPLES = OVERLAP_FRAMES * BASIC_PITCH_HOP
WINDOW_HOP = BASIC_PITCH_WINDOW - OVERLAP_SAMPLES
ANNOTATIONS_FPS = BASIC_PITCH_SAMPLE_RATE // BASIC_PITCH_HOP

# Changes when the notes of an input change for the same model and settings, so caches of the old notes are not
# reused: 2 transcribes to the end of the recording.
TRANSCRIPTION_VERSION = 2

_ONNX_INPUT = "serving_default_input_2:0"
_ONNX_OUTPUTS = {"note": "StatefulPartitionedCall:1", "onset": "StatefulPartitionedCall:2", "contour": "StatefulPartitionedCall:0"}


PIANO_LOWEST_HZ, PIANO_HIGHEST_HZ = 27.5, 4186.01  # A0 and C8, MIDI 21 and 108


class TranscriberUnavailableError(ImportError):
    """basic-pitch or onnxruntime is missing."""


def _not_from_basic_pitch(record: logging.LogRecord) -> bool:
    return f"{os.sep}basic_pitch{os.sep}" not in record.pathname


@contextlib.contextmanager
def _quiet_basic_pitch_import():
    # basic-pitch logs a warning at import, on the root logger, for every optional backend (TensorFlow, CoreML,
    # TFLite) it lacks. Only its records are dropped: the root logger's level stays, so other threads' warnings
    # (a truncated file, PCM passed as float) still reach the user.
    root = logging.getLogger()
    root.addFilter(_not_from_basic_pitch)
    try:
        yield
    finally:
        root.removeFilter(_not_from_basic_pitch)


def _basic_pitch(*submodules: str):
    """The basic-pitch package, with the named submodules imported (`"inference"` costs seconds: librosa, scipy)."""
    try:
        with _quiet_basic_pitch_import():
            import basic_pitch

            for name in submodules:
                importlib.import_module(f"basic_pitch.{name}")
    except ImportError as error:
        raise TranscriberUnavailableError(
            "Piano transcription needs basic-pitch: `pip install --no-deps basic-pitch==0.4.0` beside onnxruntime "
            "(its own requirements would install TensorFlow). Or pass MIDI/notes instead of audio."
        ) from error
    return basic_pitch


# Where a model folder may carry basic-pitch's ONNX model (with its LICENSE and NOTICE): `MDPianoProcessor`'s
# `from_pretrained` then transcribes with it, so the folder works without the basic-pitch package, which cannot be
# installed from a requirements file without its TensorFlow dependency. `scripts/export_hub.py` and
# `scripts/export_space.py` put it there.
BUNDLED_MODEL_FILE = "basic-pitch/nmp.onnx"


@functools.cache
def default_model_path() -> str:
    """Path of the ICASSP 2022 ONNX model shipped inside the basic-pitch wheel."""
    basic_pitch = _basic_pitch()
    return str(basic_pitch.build_icassp_2022_model_path(basic_pitch.FilenameSuffix.onnx))


@functools.cache
def _file_sha1(path: str) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def transcription_model_identity(model_path: str | None) -> str | None:
    """
    `None` for basic-pitch's own model (the default, or a copy of it, such as a Hub folder's `basic-pitch/nmp.onnx`
    beside an installed basic-pitch), else the SHA-1 of `model_path`'s file: what transcriptions depend on beyond the
    thresholds.
    """
    if model_path is None:
        return None
    try:
        default = _file_sha1(default_model_path())
    except TranscriberUnavailableError:  # no basic-pitch to compare with: the file's own identity
        default = None
    digest = _file_sha1(str(model_path))
    return None if digest == default else digest


# glibc's `mallopt` parameters and their initial values: once one is set, glibc no longer raises either.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_INITIAL_THRESHOLD = 128 * 1024


@functools.cache
def _glibc():
    """The C library when it is glibc (which has `malloc_trim` and `mallopt`), else `None`."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def _release_free_heap() -> None:
    """Hands the C heap's free pages back to the OS (after each segment of a long recording)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _keep_large_blocks_mapped() -> None:
    """
    Fixes glibc's thresholds at their initial 128 KiB: above the first, a block is mapped on its own (and unmapped
    when freed); above the second, free memory at the top of a heap goes back to the OS. glibc otherwise raises
    them (to the size of each mapped block freed, up to 32 and 64 MiB), so the many-MB arrays of each segment of a
    long recording come from the heap, whose holes between longer-lived blocks it keeps: a 1-hour file's footprint
    crept up segment by segment. Process-wide, so done only once a recording turns out long.
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, _INITIAL_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _INITIAL_THRESHOLD)


def _available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=4)
def _onnx_session(model_path: str):
    try:
        import onnxruntime
    except ImportError as error:
        raise TranscriberUnavailableError("Piano transcription needs onnxruntime: `pip install onnxruntime`.") from error
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"Transcription model not found: {model_path}")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL  # ~8% faster here
    # One thread per run: runs go side by side instead (see `TranscriptionStream`).
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])


class MDPianoTranscriber:
    r"""
    Turns piano audio into notes with basic-pitch's ONNX model. The model is loaded once per process and shared.

    Windowing and note extraction follow basic-pitch's `predict()` (same padding, window overlap and post-processing,
    the latter in [`extract_notes`]), so the notes equal basic-pitch's own for the same thresholds, but for the end of
    the recording: `predict()` keeps 86 frames per second where its windows give 86.6, and so leaves out the last
    0.7 % of a recording, which is transcribed here. The windows run through onnxruntime in batches, several batches
    at once on separate threads. Velocity is `round(127 *
    amplitude)`, as in basic-pitch's MIDI output. Pitch bends are not computed.

    Args:
        onset_threshold (`float`, *optional*, defaults to 0.5): minimum onset activation to start a note.
        frame_threshold (`float`, *optional*, defaults to 0.3): minimum frame activation to keep a note sounding.
        minimum_note_length_ms (`float`, *optional*, defaults to 127.70): shortest note kept, in milliseconds.
        minimum_frequency (`float`, *optional*): lowest pitch kept, in Hz.
        maximum_frequency (`float`, *optional*): highest pitch kept, in Hz.
        melodia_trick (`bool`, *optional*, defaults to `True`): basic-pitch's extra note-tracking pass.
        batch_size (`int`, *optional*, defaults to 2): 2-s windows per onnxruntime run. onnxruntime keeps the memory of
            its largest run, which grows with the batch; on a 2-core CPU, larger batches were no faster.
        num_threads (`int`, *optional*, defaults to 0): runs going side by side on their own threads, each running
            onnxruntime single-threaded (on a 2-core CPU, faster per window than one run at a time on two intra-op
            threads, with equal outputs); 0 means one per CPU available to the process.
        model_path (`str`, *optional*): another basic-pitch ONNX file; defaults to [`default_model_path`].
    """

    def __init__(
        self,
        onset_threshold: float = 0.5,
        frame_threshold: float = 0.3,
        minimum_note_length_ms: float = 127.70,
        minimum_frequency: float | None = None,
        maximum_frequency: float | None = None,
        melodia_trick: bool = True,
        batch_size: int = 2,
        num_threads: int = 0,
        model_path: str | None = None,
    ):
        for name, value in (("onset_threshold", onset_threshold), ("frame_threshold", frame_threshold)):
            if not 0.0 < value < 1.0:
                raise ValueError(f"`{name}` must be in (0, 1), got {value}.")
        if minimum_note_length_ms < 0:
            raise ValueError(f"`minimum_note_length_ms` must be non-negative, got {minimum_note_length_ms}.")
        for name, value in (("minimum_frequency", minimum_frequency), ("maximum_frequency", maximum_frequency)):
            # The transcriber's 88 pitches; outside them a limit would index its activations from the far end.
            if value is not None and not PIANO_LOWEST_HZ <= value <= PIANO_HIGHEST_HZ:
                raise ValueError(f"`{name}` must lie within the piano's range, {PIANO_LOWEST_HZ} to {PIANO_HIGHEST_HZ} "
                                 f"Hz (A0 to C8), or be None; got {value}.")  # fmt: skip
        if minimum_frequency is not None and maximum_frequency is not None and minimum_frequency >= maximum_frequency:
            raise ValueError(
                f"`minimum_frequency` ({minimum_frequency}) must be below `maximum_frequency` ({maximum_frequency})."
            )
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be at least 1, got {batch_size}.")
        if num_threads < 0:
            raise ValueError(f"`num_threads` must be at least 1, or 0 for one per CPU; got {num_threads}.")
        self.onset_threshold = onset_threshold
        self.frame_threshold = frame_threshold
        self.minimum_note_length_ms = minimum_note_length_ms
        self.minimum_frequency = minimum_frequency
        self.maximum_frequency = maximum_frequency
        self.melodia_trick = melodia_trick
        self.batch_size = batch_size
        self.num_threads = num_threads or _available_cpus()
        self.model_path = model_path

    def to_dict(self) -> dict:
        """The transcription settings (what [`MDPianoProcessor`] saves)."""
        return {
            "onset_threshold": self.onset_threshold,
            "frame_threshold": self.frame_threshold,
            "minimum_note_length_ms": self.minimum_note_length_ms,
            "minimum_frequency": self.minimum_frequency,
            "maximum_frequency": self.maximum_frequency,
            "melodia_trick": self.melodia_trick,
        }

    @property
    def max_runs_in_flight(self) -> int:
        """Runs a stream submits before it waits for the oldest: two per thread, so no thread waits for work."""
        return 2 * self.num_threads

    @property
    def session(self):
        return _onnx_session(self.model_path or default_model_path())

    def __call__(self, audio, sampling_rate: int | None = None, min_peak: float | None = None) -> list[Note]:
        """
        Transcribes one recording.

        Args:
            audio: anything [`load_audio`] accepts: a waveform with `sampling_rate`, a path, a `datasets` Audio value.
            sampling_rate: rate of an array input in Hz (resampled to 22050 Hz if different).
            min_peak: raise a quieter recording to this peak first (see [`load_audio`]); `None` reads it as it is.

        Returns:
            `list[Note]` sorted by onset then pitch; empty for silence.
        """
        stream = self.stream()
        for block in stream_audio(audio, sampling_rate, BASIC_PITCH_SAMPLE_RATE, min_peak=min_peak):
            stream.feed(block)
        return stream.finish()

    def stream(self) -> "TranscriptionStream":
        """A [`TranscriptionStream`]: the transcription of a 22050 Hz waveform given block by block."""
        return TranscriptionStream(self)

    def frames_to_notes(self, note: np.ndarray, onset: np.ndarray) -> list[tuple[int, int, int, float]]:
        """basic-pitch's note extraction (`output_to_notes_polyphonic`) with this transcriber's thresholds:
        `(start frame, end frame, pitch, amplitude)` per note."""
        return extract_notes(
            note,
            onset,
            onset_threshold=self.onset_threshold,
            frame_threshold=self.frame_threshold,
            min_note_length=int(np.round(self.minimum_note_length_ms / 1000 * (BASIC_PITCH_SAMPLE_RATE / BASIC_PITCH_HOP))),
            infer_onsets=True,
            max_frequency=self.maximum_frequency,
            min_frequency=self.minimum_frequency,
            melodia_trick=self.melodia_trick,
        )


class _ActivationBuffer:
    """
    The note and onset activations of consecutive frames, `(frames, 88)` each, held in two arrays that are written
    in place and grow by doubling (no list of run outputs joined again at every segment).
    """

    def __init__(self):
        self.note = self.onset = None
        self.length = 0

    def append(self, note: np.ndarray, onset: np.ndarray) -> None:
        needed = self.length + len(note)
        if self.note is None or needed > len(self.note):
            capacity = max(needed, 2 * (0 if self.note is None else len(self.note)))
            grown = [np.empty((capacity, a.shape[1]), a.dtype) for a in (note, onset)]
            if self.note is not None:
                grown[0][: self.length], grown[1][: self.length] = self.held()
            self.note, self.onset = grown
        self.note[self.length : needed], self.onset[self.length : needed] = note, onset
        self.length = needed

    def held(self) -> tuple[np.ndarray, np.ndarray]:
        """Views of the frames held (valid until the next `append` or `drop`)."""
        return self.note[: self.length], self.onset[: self.length]

    def drop(self, count: int) -> None:
        """
        Forgets the first `count` frames. The rest move to the start of new arrays of the same capacity, whose pages
        the OS provides only as frames are written: between segments, a long recording's buffer does not keep a
        whole segment's memory beside the model's work, and the next segment needs no doubling (old and new arrays
        side by side).
        """
        count = min(count, self.length)
        kept = self.length - count
        if self.note is not None:
            moved = [np.empty_like(array) for array in (self.note, self.onset)]
            moved[0][:kept], moved[1][:kept] = self.note[count : self.length], self.onset[count : self.length]
            self.note, self.onset = moved
        self.length = kept

    def truncate(self, length: int) -> None:
        """Keeps only the first `length` frames."""
        self.length = max(0, min(self.length, length))


class TranscriptionStream:
    """
    The transcription of a 22050 Hz waveform fed in consecutive blocks, with basic-pitch's windowing: the signal is
    preceded by half a window overlap of zeros and cut into 2-s windows every WINDOW_HOP samples; each window's
    frames, less 15 at each end, are kept in order. Windows run through onnxruntime in batches as they fill, on the
    transcriber's threads while this one goes on reading (at most `max_runs_in_flight` batches ahead); their frames
    are collected in order.

    Notes are extracted by basic-pitch over the frames of segments of `SEGMENT_S` seconds (with `MARGIN_S` of
    context on each side; a segment keeps the notes that start in it), so memory stays flat however long the
    input (the activations sit in one buffer written in place; a stream that needs segments fixes glibc's allocation
    thresholds, see `_keep_large_blocks_mapped`). A recording shorter than one segment is extracted in one piece,
    as basic-pitch's `predict()` does.
    """

    SEGMENT_S = 600
    MARGIN_S = 30

    def __init__(self, transcriber: MDPianoTranscriber):
        self.transcriber = transcriber
        self.buffer = np.zeros(OVERLAP_SAMPLES // 2, dtype=np.float32)
        self.samples = 0
        self.windows = []
        self.activations = _ActivationBuffer()
        self.first_frame = 0  # global index of the first frame held
        self.segment_start = 0  # global frame where the next segment of notes begins
        self.frame_notes = []  # (start frame, end frame, pitch, amplitude), global frames
        self.segment_frames = self.SEGMENT_S * ANNOTATIONS_FPS
        self.margin_frames = self.MARGIN_S * ANNOTATIONS_FPS
        self.closed = False
        # Per stream, not per process: a pool's threads do not survive a fork (`datasets.map(num_proc=...)`).
        threads = transcriber.num_threads
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="mdpiano-transcription") if threads > 1 else None
        self.runs = deque()  # futures of the batches submitted, oldest first

    def feed(self, block: np.ndarray) -> "TranscriptionStream":
        self.samples += len(block)
        self.buffer = np.concatenate([self.buffer, np.asarray(block, dtype=np.float32)])
        while len(self.buffer) >= BASIC_PITCH_WINDOW:
            self._add_window(self.buffer[:BASIC_PITCH_WINDOW])
        self._collect(wait=False)
        self._extract(final=False)
        return self

    def _add_window(self, window):
        self.windows.append(window)
        self.buffer = self.buffer[WINDOW_HOP:]
        if len(self.windows) == self.transcriber.batch_size:
            self._run_windows()

    def _run_windows(self):
        if not self.windows:
            return
        batch, self.windows = np.stack(self.windows)[:, :, None], []
        if self.executor is None:
            self._keep_frames(self._transcribe(batch))
            return
        self.runs.append(self.executor.submit(self._transcribe, batch))  # onnxruntime releases the GIL
        self._collect(wait=len(self.runs) > self.transcriber.max_runs_in_flight)

    def _transcribe(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        names = [_ONNX_OUTPUTS["note"], _ONNX_OUTPUTS["onset"]]
        return self.transcriber.session.run(names, {_ONNX_INPUT: batch})

    def _collect(self, wait: bool):
        """Keeps the frames of the finished runs, in order; with `wait`, of the oldest one at least."""
        while self.runs and (wait or self.runs[0].done()):
            self._keep_frames(self.runs.popleft().result())
            wait = False

    def _keep_frames(self, outputs: tuple[np.ndarray, np.ndarray]):
        note, onset = outputs
        half = OVERLAP_FRAMES // 2
        kept = [output[:, half:-half].reshape(-1, output.shape[-1]) for output in (note, onset)]
        self.activations.append(*kept)

    def _extract(self, final: bool):
        while self.activations.length:
            held_end = self.first_frame + self.activations.length
            segment_end = self.segment_start + self.segment_frames
            if not final and held_end < segment_end + self.margin_frames:
                return
            if not final:
                _keep_large_blocks_mapped()  # a long recording: its segments' arrays must not fragment the heap
            note, onset = self.activations.held()
            context = max(self.segment_start - self.margin_frames, self.first_frame) - self.first_frame
            stop = len(note) if final else segment_end + self.margin_frames - self.first_frame
            offset = self.first_frame + context
            for start, end, pitch, amplitude in self.transcriber.frames_to_notes(note[context:stop], onset[context:stop]):
                if final or offset + start < segment_end:
                    if offset + start >= self.segment_start:
                        self.frame_notes.append((offset + start, offset + end, pitch, amplitude))
            if final:
                return
            self.segment_start = segment_end
            drop = max(0, self.segment_start - self.margin_frames - self.first_frame)
            del note, onset
            self.activations.drop(drop)
            self.first_frame += drop
            _release_free_heap()

    def final_until_s(self) -> float:
        """Every note starting before this time (seconds) is final: extracted, and handed out by [`pop_notes`]."""
        if self.closed:
            return float("inf")
        return float(model_frames_to_time(self.segment_start + 1)[self.segment_start])

    def pop_notes(self) -> np.ndarray:
        """
        The final notes not handed out yet, as an (N, 4) float64 array (onset, offset, pitch, velocity) sorted by
        onset then pitch; they are no longer kept. Notes come out in onset order across calls.
        """
        frame_notes, self.frame_notes = self.frame_notes, []
        if not frame_notes:
            return np.zeros((0, 4))
        frames = np.array(frame_notes, dtype=np.float64)
        times = model_frames_to_time(int(frames[:, 1].max()) + 1)
        array = np.stack([times[frames[:, 0].astype(int)], times[frames[:, 1].astype(int)], frames[:, 2],
                          np.round(127 * frames[:, 3])], axis=1)  # fmt: skip
        return array[np.lexsort((array[:, 2], array[:, 0]))]

    def close(self) -> "TranscriptionStream":
        """Runs the last (zero-padded) windows and extracts the remaining notes: the input has ended."""
        padded_length = OVERLAP_SAMPLES // 2 + self.samples
        # The last windows (starting before the end of the padded signal) are zero-padded, as in basic-pitch.
        windows_total = -(-padded_length // WINDOW_HOP)
        windows_done = (padded_length - len(self.buffer)) // WINDOW_HOP  # each window moved the buffer on by a hop
        for _ in range(windows_total - windows_done):
            self._add_window(np.pad(self.buffer, (0, max(0, BASIC_PITCH_WINDOW - len(self.buffer))))[:BASIC_PITCH_WINDOW])
        self._run_windows()
        while self.runs:
            self._collect(wait=True)
        # The frames that start before the input ends. basic-pitch's `predict()` keeps floor(samples * 86 / 22050),
        # but each window adds 142 frames per 36164 samples (86.6 a second): that count left the last 0.7 % of every
        # recording untranscribed (4 s of a 10-minute one).
        held = self.first_frame + self.activations.length
        n_frames = int(np.searchsorted(model_frames_to_time(held), self.samples / BASIC_PITCH_SAMPLE_RATE))
        self.activations.truncate(n_frames - self.first_frame)
        # Whole segments first, however many arrived since the last block: the notes do not depend on when runs end.
        self._extract(final=False)
        self._extract(final=True)
        if n_frames == 0:
            self.frame_notes = []
        self.activations = _ActivationBuffer()
        self.closed = True
        if self.executor is not None:
            self.executor.shutdown()
            self.executor = None
        return self

    def abandon(self) -> None:
        """Stops a stream that will not be finished (its reader stopped early): pending runs are dropped and the
        threads end. Nothing happens after [`close`]."""
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
        self.runs.clear()

    def finish(self) -> list[Note]:
        """The notes of the whole input (those not popped yet), sorted by onset then pitch; empty for silence."""
        return array_to_notes(self.close().pop_notes())


__all__ = [
    "BUNDLED_MODEL_FILE",
    "MDPianoTranscriber",
    "TranscriberUnavailableError",
    "TranscriptionStream",
    "default_model_path",
]
