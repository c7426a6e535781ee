"""Processor of mdpiano: one call turns piano audio (or MIDI) into both model inputs."""

import contextlib
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np
from transformers import BatchFeature, ProcessorMixin
from transformers.utils import cached_file

from .audio_mdpiano import is_single_audio, load_audio, stream_audio
from .feature_extraction_mdpiano import MDPianoFeatureExtractor
from .notes_mdpiano import Note, is_note_batch, notes_to_array, read_midi_notes, window_notes
from .tokenization_mdpiano import MDPianoTokenizer
from .transcription_mdpiano import BASIC_PITCH_SAMPLE_RATE, BUNDLED_MODEL_FILE, MDPianoTranscriber
from .windowing import WindowCutter

TRANSCRIPTION_DEFAULTS = MDPianoTranscriber().to_dict()
# The training renderings peak at 0.3 to 0.95 (`augmentation.sample_train_condition`); a recording quieter than
# that is raised to just below them. Both domains read level: the features in absolute decibels, the transcription
# in its note velocities and in which notes clear its thresholds.
DEFAULT_MIN_PEAK = 0.25


# The config values a processor is built from ([`MDPianoProcessor.from_config`]): what the model's inputs are.
PROCESSOR_CONFIG_FIELDS = (
    "sampling_rate", "n_fft", "hop_length", "n_mels", "n_mfcc", "fmin", "fmax", "acoustic_input", "chunk_length_s",
    "time_shift_resolution_ms", "max_time_shift_ms", "velocity_bins", "max_harmonic", "max_symbolic_length",
)  # fmt: skip


class AnalysisStep(NamedTuple):
    """What [`MDPianoProcessor.analysis_stream`] has computed of a recording after one more block of its audio."""

    frames: np.ndarray | None  # new final (frames, feature_size) unnormalised features; None without acoustic domain
    notes: np.ndarray | None  # new final (N, 4) notes; None without symbolic domain
    seconds: float  # audio read so far
    notes_final_s: float  # time before which the notes are final
    source_sampling_rate: float  # the recording's own rate (Hz), before resampling to the processor's


class MDPianoProcessor(ProcessorMixin):
    r"""
    Wraps [`MDPianoFeatureExtractor`] (acoustic domain), [`MDPianoTranscriber`] and [`MDPianoTokenizer`] (symbolic
    domain) into one processor.

    Audio is decoded, downmixed and resampled once, to the feature extractor's rate (22050 Hz, basic-pitch's own);
    both domains read that same waveform. With truncation (the default) the inputs are those of the analysis window
    (`chunk_length_s` from the start), cut from the features and transcription of the recording as the pipeline
    cuts its first window, so they equal the pipeline's. The transcription settings are saved in
    `processor_config.json`. A folder that also carries basic-pitch's ONNX model (`basic-pitch/nmp.onnx`, as exported
    Hub and Space folders do) is transcribed with that copy, so it needs no basic-pitch package; otherwise the model
    comes from the installed basic-pitch wheel.

    Outputs (one [`BatchFeature`]; names do not collide):

    - `input_features` (batch, frames, features) and `feature_attention_mask` (batch, frames): acoustic domain;
    - `input_ids` (batch, tokens) and `attention_mask` (batch, tokens): symbolic domain.

    Args:
        feature_extractor ([`MDPianoFeatureExtractor`]): the acoustic feature extractor.
        tokenizer ([`MDPianoTokenizer`]): the symbolic tokenizer.
        onset_threshold, frame_threshold, minimum_note_length_ms, minimum_frequency, maximum_frequency,
        melodia_trick: transcription settings, see [`MDPianoTranscriber`].
        min_peak (`float` or `None`, defaults to 0.25): a recording whose peak sample is below this is raised to it
            (by at most 30 dB; silence stays silent) before both domains read it, so that a quiet recording reaches
            the levels of the training audio; louder ones keep their samples. `None` reads every recording as it is.
    """

    def __init__(
        self,
        feature_extractor,
        tokenizer,
        onset_threshold=TRANSCRIPTION_DEFAULTS["onset_threshold"],
        frame_threshold=TRANSCRIPTION_DEFAULTS["frame_threshold"],
        minimum_note_length_ms=TRANSCRIPTION_DEFAULTS["minimum_note_length_ms"],
        minimum_frequency=TRANSCRIPTION_DEFAULTS["minimum_frequency"],
        maximum_frequency=TRANSCRIPTION_DEFAULTS["maximum_frequency"],
        melodia_trick=TRANSCRIPTION_DEFAULTS["melodia_trick"],
        min_peak=DEFAULT_MIN_PEAK,
    ):
        super().__init__(feature_extractor, tokenizer)
        if min_peak is not None and not (isinstance(min_peak, (int, float)) and 0.0 < min_peak <= 1.0):
            raise ValueError(f"`min_peak` must be a peak level in (0, 1] or None, got {min_peak!r}.")
        self.min_peak = min_peak
        self.onset_threshold = onset_threshold
        self.frame_threshold = frame_threshold
        self.minimum_note_length_ms = minimum_note_length_ms
        self.minimum_frequency = minimum_frequency
        self.maximum_frequency = maximum_frequency
        self.melodia_trick = melodia_trick
        # Set by `from_pretrained` when the folder carries the transcription model; not a setting, so never saved.
        self.transcription_model_path = None
        self.transcriber  # validates the settings now rather than at the first call

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "MDPianoProcessor":
        processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        location = {name: kwargs[name] for name in ("cache_dir", "force_download", "local_files_only", "token",
                                                    "revision", "subfolder") if name in kwargs}  # fmt: skip
        processor.transcription_model_path = cached_file(
            pretrained_model_name_or_path, BUNDLED_MODEL_FILE, **location,
            _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False,
        )  # fmt: skip
        return processor

    def save_pretrained(self, save_directory, **kwargs):
        """
        `ProcessorMixin.save_pretrained`; a processor that transcribes with a model file of its own (loaded from a
        folder that carries `basic-pitch/nmp.onnx`) saves that file too, with the LICENSE and NOTICE beside it, so the
        saved folder transcribes as this processor does, with or without the basic-pitch package.
        """
        if self.transcription_model_path is not None:
            source = Path(self.transcription_model_path)
            target = Path(save_directory) / BUNDLED_MODEL_FILE
            if not (target.exists() and target.samefile(source)):
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, target)
                for licence in ("LICENSE", "NOTICE"):
                    if (source.parent / licence).is_file():
                        shutil.copy(source.parent / licence, target.parent / licence)
        # Copied first: with `push_to_hub=True` the parent uploads the folder as it stands.
        return super().save_pretrained(save_directory, **kwargs)

    @classmethod
    def from_config(cls, config, **transcription_settings) -> "MDPianoProcessor":
        """A processor whose feature extractor and tokenizer match an [`MDPianoConfig`] (its `PROCESSOR_CONFIG_FIELDS`)."""
        feature_extractor = MDPianoFeatureExtractor(
            sampling_rate=config.sampling_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
            n_mfcc=config.n_mfcc,
            fmin=config.fmin,
            fmax=config.fmax,
            feature_type=config.acoustic_input,
            chunk_length_s=config.chunk_length_s,
        )
        tokenizer = MDPianoTokenizer(
            time_shift_resolution_ms=config.time_shift_resolution_ms,
            max_time_shift_ms=config.max_time_shift_ms,
            velocity_bins=config.velocity_bins,
            max_harmonic=config.max_harmonic,
            model_max_length=config.max_symbolic_length,
        )
        return cls(feature_extractor, tokenizer, **transcription_settings)

    @property
    def transcriber(self) -> MDPianoTranscriber:
        """The transcriber with this processor's settings (the ONNX session itself is shared per process)."""
        settings = {name: getattr(self, name) for name in TRANSCRIPTION_DEFAULTS}
        return MDPianoTranscriber(**settings, model_path=self.transcription_model_path)

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    def __call__(
        self,
        audio=None,
        sampling_rate: int | None = None,
        midi=None,
        notes=None,
        padding: bool | str | None = None,
        truncation: bool = True,
        return_tensors: str | None = None,
        **kwargs,
    ) -> BatchFeature:
        """
        Prepares one input or a batch for the model.

        Args:
            audio: one recording or a list: paths, arrays (with `sampling_rate`), `(array, rate)` tuples or `datasets`
                Audio values (see [`load_audio`]). Gives the acoustic features and, unless `midi` or `notes` is
                given, the transcription for the symbolic domain.
            sampling_rate: rate of array inputs in Hz (any rate; resampled once).
            midi: a MIDI path or a list of them, used for the symbolic domain instead of a transcription (notes held
                by their sustain pedal, see [`read_midi_notes`]).
            notes: a set of notes or a list of sets (see [`MDPianoTokenizer.notes_to_ids`]), like `midi`.
            padding: acoustic features: `"max_length"` pads to one window (the default with `truncation`),
                `"longest"` to the longest recording of the batch (the default without). Tokens are padded to the
                longest sequence of the batch.
            truncation: analyse the first `chunk_length_s` seconds (notes starting later are dropped, notes
                overlapping the end are cut there) and keep at most `model_max_length` tokens.
            return_tensors: `"pt"`, `"np"` or `None`.

        Returns:
            [`BatchFeature`] with `input_features` and `feature_attention_mask` when audio is given, and `input_ids`
            and `attention_mask` always.
        """
        if kwargs:
            raise TypeError(f"Unexpected arguments: {sorted(kwargs)}.")
        if midi is not None and notes is not None:
            raise ValueError("Pass either `midi` or `notes`, not both.")
        if audio is None and midi is None and notes is None:
            raise ValueError("Pass `audio` (recordings), `midi` (MIDI files) or `notes`.")

        if midi is not None:
            paths = [midi] if isinstance(midi, (str, os.PathLike)) else list(midi)
            note_sets = [read_midi_notes(path) for path in paths]
        elif notes is not None:
            note_sets = list(notes) if is_note_batch(notes) else [notes]
        else:
            note_sets = None
        if audio is None:
            return BatchFeature(self.symbolic_inputs(note_sets, truncation), tensor_type=return_tensors)
        recordings = [audio] if is_single_audio(audio) else list(audio)
        if not recordings:
            raise ValueError("Got an empty list of recordings.")
        if note_sets is not None and len(note_sets) != len(recordings):
            raise ValueError(f"Got {len(recordings)} recordings but {len(note_sets)} sets of notes.")
        if padding is None:
            padding = "max_length" if truncation else "longest"
        elif padding == "max_length" and not truncation and len(recordings) > 1:
            raise ValueError("padding='max_length' pads to one window, but truncation=False keeps whole recordings: "
                             "use padding='longest' (the default without truncation).")  # fmt: skip
        if truncation:
            windows = [self.first_window(recording, sampling_rate, symbolic=note_sets is None) for recording in recordings]
            if note_sets is not None:
                windows = [(features, notes_to_array(notes), 0.0, first) for (features, _, _, first), notes in zip(windows, note_sets)]
            return self.window_inputs(windows, padding=padding, return_tensors=return_tensors)
        waveforms = self.load_audio(recordings, sampling_rate)
        if note_sets is None:
            transcriber = self.transcriber  # the waveforms are loaded: already raised to `min_peak`
            note_sets = [transcriber(waveform, self.sampling_rate) for waveform in waveforms]
        data = self.symbolic_inputs(note_sets, truncation=False)
        acoustic = self.feature_extractor(
            waveforms, sampling_rate=self.sampling_rate, padding=padding, truncation=False, return_attention_mask=True
        )
        data["input_features"] = acoustic["input_features"]
        data["feature_attention_mask"] = acoustic["attention_mask"]
        return BatchFeature(data, tensor_type=return_tensors)

    def load_audio(self, audio, sampling_rate: int | None = None) -> list[np.ndarray]:
        """Decodes, downmixes and resamples one recording or a list, whole, to mono float32 at `self.sampling_rate`
        (quiet ones raised to `min_peak`)."""
        items = [audio] if is_single_audio(audio) else list(audio)
        if not items:
            raise ValueError("Got an empty list of recordings.")
        return [load_audio(item, sampling_rate, self.sampling_rate, min_peak=self.min_peak) for item in items]

    def analysis_stream(self, audio, sampling_rate: int | None = None, acoustic: bool = True, symbolic: bool = True):
        """
        Streams one recording block by block through decoding and resampling, one STFT and the transcriber, so a
        long recording is never held whole. Yields an [`AnalysisStep`] per block: the new final frames
        (unnormalised) and notes (N, 4), `None` for a domain not asked for, the seconds read so far, the time before
        which notes are final, and the recording's own sampling rate. Closing the generator early stops the
        transcriber's threads.
        """
        features = self.feature_extractor.stream() if acoustic else None
        transcription = self.transcriber.stream() if symbolic else None
        # The transcriber reads basic-pitch's rate: blocks at another working rate are resampled for it on the way.
        to_transcriber = None
        if transcription is not None and self.sampling_rate != BASIC_PITCH_SAMPLE_RATE:
            import soxr

            to_transcriber = soxr.ResampleStream(self.sampling_rate, BASIC_PITCH_SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        samples = 0
        try:
            blocks = stream_audio(audio, sampling_rate, self.sampling_rate, min_peak=self.min_peak)
            for block in blocks:
                samples += len(block)
                # The transcriber first: its runs go on in its threads while this one computes the block's features.
                if transcription is not None:
                    transcription.feed(block if to_transcriber is None else to_transcriber.resample_chunk(block))
                if features is not None:
                    features.feed(block)
                yield AnalysisStep(
                    None if features is None else features.pop_frames(),
                    None if transcription is None else transcription.pop_notes(),
                    samples / self.sampling_rate,
                    float("inf") if transcription is None else transcription.final_until_s(),
                    blocks.source_sampling_rate,
                )
            if to_transcriber is not None:
                transcription.feed(to_transcriber.resample_chunk(np.zeros(0, np.float32), last=True))
            yield AnalysisStep(
                None if features is None else features.finish(normalize=False),
                None if transcription is None else transcription.close().pop_notes(),
                samples / self.sampling_rate,
                float("inf"),
                blocks.source_sampling_rate,
            )
        finally:
            if transcription is not None:
                transcription.abandon()

    def first_window(self, audio, sampling_rate: int | None = None, symbolic: bool = True) -> tuple:
        """
        The first analysis window of one recording, as [`window_inputs`] takes it: the same frames and notes as the
        pipeline's first window, which come from the STFT and transcription of the recording around it, not of the
        recording cut to the window. The recording is read only as far as that window needs (notes are final once
        the transcriber's segment, up to ten minutes, is complete).
        """
        window_s = self.feature_extractor.chunk_length_s
        cutter = WindowCutter(self, window_s, use_acoustic=True, use_symbolic=symbolic)
        stream = self.analysis_stream(audio, sampling_rate, symbolic=symbolic)
        with contextlib.closing(stream):
            for step in stream:
                cutter.add(step.frames, step.notes)
                if cutter.ready(step.seconds, step.notes_final_s):
                    break
        return cutter.crop(0.0)

    def transcribe(self, audio, sampling_rate: int | None = None) -> list[list[Note]]:
        """Notes of one recording or a list (anything [`load_audio`] accepts), one list of notes per recording."""
        transcriber = self.transcriber
        items = [audio] if is_single_audio(audio) else list(audio)
        return [transcriber(item, sampling_rate, min_peak=self.min_peak) for item in items]

    def symbolic_inputs(self, note_sets: list, truncation: bool = True) -> dict:
        """
        `input_ids` and `attention_mask` (lists) of note sets, each cut to the analysis window when `truncation`.
        Tokens are padded to the longest sequence of the batch: a fixed length would mostly add padding.
        """
        if truncation:
            note_sets = [window_notes(n, 0.0, self.feature_extractor.chunk_length_s) for n in note_sets]
        symbolic = self.tokenizer.encode_notes(note_sets, padding="longest", truncation=truncation, return_attention_mask=True,
                                               warn_truncation=False)  # fmt: skip
        return {"input_ids": symbolic["input_ids"], "attention_mask": symbolic["attention_mask"]}

    def window_inputs(self, windows: list, padding: bool | str = "max_length", return_tensors: str | None = "pt") -> BatchFeature:
        """
        Model inputs for analysis windows cut from whole recordings: one STFT and one transcription per recording,
        instead of one per window (what the pipeline does for long inputs, and training on cached clips).

        Args:
            windows: `(features, notes, start)` per window: the recording's unnormalised features (frames,
                feature_size) from `feature_extractor.extract(..., normalize=False)` or `None` (no acoustic
                domain), its notes (N, 4) or `None` (no symbolic domain: an empty sequence), and the window's start
                in seconds. Starts snap to the nearest frame, so the frames are the window's own. A fourth item,
                the index of `features`' first frame in the recording, allows passing only a recent part of it.
            padding: acoustic features, as in `__call__`.
            return_tensors: `"pt"` (default), `"np"` or `None`.

        Returns:
            [`BatchFeature`] like `__call__`'s (without the acoustic keys when no window has features).
        """
        fe = self.feature_extractor
        frames_per_second = fe.frames_per_second
        windows = [(*window, 0) if len(window) == 3 else tuple(window) for window in windows]
        firsts = [int(round(start * frames_per_second)) for _, _, start, _ in windows]
        note_sets = [
            np.zeros((0, 4)) if notes is None else window_notes(notes, first / frames_per_second, fe.chunk_length_s)
            for (_, notes, _, _), first in zip(windows, firsts)
        ]
        data = self.symbolic_inputs(note_sets)
        if any(features is not None for features, _, _, _ in windows):
            crops = [fe.normalize(features[first - offset : first - offset + fe.nb_max_frames])
                     for (features, _, _, offset), first in zip(windows, firsts)]  # fmt: skip
            acoustic = fe.pad_features(crops, padding=padding, return_attention_mask=True)  # whatever the extractor's default
            data["input_features"] = acoustic["input_features"]
            data["feature_attention_mask"] = acoustic["attention_mask"]
        return BatchFeature(data, tensor_type=return_tensors)

    @property
    def model_input_names(self):
        return ["input_features", "feature_attention_mask", "input_ids", "attention_mask"]


__all__ = ["AnalysisStep", "MDPianoProcessor", "PROCESSOR_CONFIG_FIELDS"]
