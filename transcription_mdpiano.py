"""Automatic piano transcription with basic-pitch's bundled ONNX model (Bittner et al., ICASSP 2022)."""

import contextlib
import functools
import logging
import os

import numpy as np

from .audio_mdpiano import load_audio
from .notes_mdpiano import Note

# basic-pitch's model: 22050 Hz input, 2-s windows of 43844 samples, 86 frames per second (hop 256).
BASIC_PITCH_SAMPLE_RATE = 22050
BASIC_PITCH_WINDOW = 43844
BASIC_PITCH_HOP = 256
# basic-pitch's own inference overlaps windows by 30 frames and drops half of the overlap on each side.
OVERLAP_FRAMES = 30
OVERLAP_SAMPLES = OVERLAP_FRAMES * BASIC_PITCH_HOP
WINDOW_HOP = BASIC_PITCH_WINDOW - OVERLAP_SAMPLES
ANNOTATIONS_FPS = BASIC_PITCH_SAMPLE_RATE // BASIC_PITCH_HOP

_ONNX_INPUT = "serving_default_input_2:0"
_ONNX_OUTPUTS = {"note": "StatefulPartitionedCall:1", "onset": "StatefulPartitionedCall:2", "contour": "StatefulPartitionedCall:0"}


class TranscriberUnavailableError(ImportError):
    """basic-pitch or onnxruntime is missing."""


@contextlib.contextmanager
def _quiet_basic_pitch_import():
    # basic-pitch logs a warning at import for every optional backend (TensorFlow, CoreML, TFLite) it lacks.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _basic_pitch():
    try:
        with _quiet_basic_pitch_import():
            import basic_pitch
            import basic_pitch.note_creation
    except ImportError as error:
        raise TranscriberUnavailableError(
            "Piano transcription needs basic-pitch: `pip install --no-deps basic-pitch==0.4.0` beside onnxruntime "
            "(its own requirements would install TensorFlow). Or pass MIDI/notes instead of audio."
        ) from error
    return basic_pitch


def default_model_path() -> str:
    """Path of the ICASSP 2022 ONNX model shipped inside the basic-pitch wheel."""
    basic_pitch = _basic_pitch()
    return str(basic_pitch.build_icassp_2022_model_path(basic_pitch.FilenameSuffix.onnx))


@functools.lru_cache(maxsize=4)
def _onnx_session(model_path: str, num_threads: int):
    try:
        import onnxruntime
    except ImportError as error:
        raise TranscriberUnavailableError("Piano transcription needs onnxruntime: `pip install onnxruntime`.") from error
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"Transcription model not found: {model_path}")
    options = onnxruntime.SessionOptions()
    if num_threads > 0:
        options.intra_op_num_threads = num_threads
    return onnxruntime.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])


class MDPianoTranscriber:
    r"""
    Turns piano audio into notes with basic-pitch's ONNX model. The model is loaded once per process and shared.

    Windowing and note extraction follow basic-pitch's `predict()` (same padding, window overlap and
    post-processing through `basic_pitch.note_creation`), so the notes equal basic-pitch's own for the same
    thresholds; the windows run through onnxruntime in batches. Velocity is `round(127 * amplitude)`, as in
    basic-pitch's MIDI output. Pitch bends are not computed.

    Args:
        onset_threshold (`float`, *optional*, defaults to 0.5): minimum onset activation to start a note.
        frame_threshold (`float`, *optional*, defaults to 0.3): minimum frame activation to keep a note sounding.
        minimum_note_length_ms (`float`, *optional*, defaults to 127.70): shortest note kept, in milliseconds.
        minimum_frequency (`float`, *optional*): lowest pitch kept, in Hz.
        maximum_frequency (`float`, *optional*): highest pitch kept, in Hz.
        melodia_trick (`bool`, *optional*, defaults to `True`): basic-pitch's extra note-tracking pass.
        batch_size (`int`, *optional*, defaults to 16): 2-s windows per onnxruntime call (bounds memory).
        num_threads (`int`, *optional*, defaults to 0): onnxruntime intra-op threads; 0 lets onnxruntime choose.
        model_path (`str`, *optional*): another basic-pitch ONNX file; defaults to the one in the wheel.
    """

    def __init__(
        self,
        onset_threshold: float = 0.5,
        frame_threshold: float = 0.3,
        minimum_note_length_ms: float = 127.70,
        minimum_frequency: float | None = None,
        maximum_frequency: float | None = None,
        melodia_trick: bool = True,
        batch_size: int = 16,
        num_threads: int = 0,
        model_path: str | None = None,
    ):
        for name, value in (("onset_threshold", onset_threshold), ("frame_threshold", frame_threshold)):
            if not 0.0 < value < 1.0:
                raise ValueError(f"`{name}` must be in (0, 1), got {value}.")
        if minimum_note_length_ms < 0:
            raise ValueError(f"`minimum_note_length_ms` must be non-negative, got {minimum_note_length_ms}.")
        if minimum_frequency is not None and maximum_frequency is not None and minimum_frequency >= maximum_frequency:
            raise ValueError(
                f"`minimum_frequency` ({minimum_frequency}) must be below `maximum_frequency` ({maximum_frequency})."
            )
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be at least 1, got {batch_size}.")
        self.onset_threshold = onset_threshold
        self.frame_threshold = frame_threshold
        self.minimum_note_length_ms = minimum_note_length_ms
        self.minimum_frequency = minimum_frequency
        self.maximum_frequency = maximum_frequency
        self.melodia_trick = melodia_trick
        self.batch_size = batch_size
        self.num_threads = num_threads
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
    def session(self):
        return _onnx_session(self.model_path or default_model_path(), self.num_threads)

    def __call__(self, audio, sampling_rate: int | None = None) -> list[Note]:
        """
        Transcribes one recording.

        Args:
            audio: anything [`load_audio`] accepts: a waveform with `sampling_rate`, a path, a `datasets` Audio value.
            sampling_rate: rate of an array input in Hz (resampled to 22050 Hz if different).

        Returns:
            `list[Note]` sorted by onset then pitch; empty for silence.
        """
        waveform = load_audio(audio, sampling_rate, BASIC_PITCH_SAMPLE_RATE)
        return self.notes_from_activations(self.activations(waveform))

    def activations(self, waveform: np.ndarray) -> dict[str, np.ndarray]:
        """
        basic-pitch's frame-level outputs for a mono 22050 Hz waveform.

        Returns:
            dict with `note` and `onset` of shape (frames, 88) and `contour` of shape (frames, 264), at 86 frames/s.
        """
        waveform = np.asarray(waveform, dtype=np.float32)
        padded = np.concatenate([np.zeros(OVERLAP_SAMPLES // 2, np.float32), waveform])
        starts = np.arange(0, padded.shape[0], WINDOW_HOP)
        padded = np.pad(padded, (0, starts[-1] + BASIC_PITCH_WINDOW - padded.shape[0]))
        session = self.session
        outputs = {name: [] for name in _ONNX_OUTPUTS}
        for first in range(0, len(starts), self.batch_size):
            batch = np.stack([padded[s : s + BASIC_PITCH_WINDOW] for s in starts[first : first + self.batch_size]])
            results = session.run(list(_ONNX_OUTPUTS.values()), {_ONNX_INPUT: batch[:, :, None]})
            for name, result in zip(_ONNX_OUTPUTS, results):
                outputs[name].append(result)
        n_frames = int(np.floor(waveform.shape[0] * (ANNOTATIONS_FPS / BASIC_PITCH_SAMPLE_RATE)))
        half_overlap = OVERLAP_FRAMES // 2
        return {
            name: np.concatenate(chunks)[:, half_overlap:-half_overlap].reshape(-1, chunks[0].shape[-1])[:n_frames]
            for name, chunks in outputs.items()
        }

    def notes_from_activations(self, activations: dict[str, np.ndarray]) -> list[Note]:
        """basic-pitch's note extraction (`output_to_notes_polyphonic`) with this transcriber's thresholds."""
        if activations["note"].shape[0] == 0:
            return []
        note_creation = _basic_pitch().note_creation
        with np.errstate(invalid="ignore", divide="ignore"):  # basic-pitch rescales by a maximum that is 0 in silence
            frames = note_creation.output_to_notes_polyphonic(
                activations["note"],
                activations["onset"],
                onset_thresh=self.onset_threshold,
                frame_thresh=self.frame_threshold,
                min_note_len=int(np.round(self.minimum_note_length_ms / 1000 * (BASIC_PITCH_SAMPLE_RATE / BASIC_PITCH_HOP))),
                infer_onsets=True,
                max_freq=self.maximum_frequency,
                min_freq=self.minimum_frequency,
                melodia_trick=self.melodia_trick,
            )
        if not frames:
            return []
        times = note_creation.model_frames_to_time(activations["contour"].shape[0])
        notes = [
            Note(float(times[start]), float(times[end]), int(pitch), int(np.round(127 * amplitude)))
            for start, end, pitch, amplitude in frames
        ]
        return sorted(notes, key=lambda note: (note.onset, note.pitch))


__all__ = ["MDPianoTranscriber", "TranscriberUnavailableError", "default_model_path"]
