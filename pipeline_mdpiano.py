"""The audio-classification pipeline of mdpiano: recordings or MIDI in, emotion quadrant scores out."""

import os

import numpy as np
import torch
from transformers.pipelines.base import ChunkPipeline
from transformers.utils import logging

from .audio_mdpiano import file_input, stream_audio
from .notes_mdpiano import array_to_notes, notes_to_array, read_midi_notes
from .processing_mdpiano import MDPianoProcessor

logger = logging.get_logger(__name__)

MIDI_SUFFIXES = (".mid", ".midi")
DEFAULT_BATCH_SIZE = 8
# MIDI input is rendered whole for the acoustic domain (FluidSynth through pretty_midi): cap its length.
MAX_RENDER_S = 3600.0


def apply_quadrant_bias(probabilities: torch.Tensor, bias) -> torch.Tensor:
    """
    Quadrant probabilities (..., 4) with `bias` (`config.quadrant_logit_bias`) added to their logarithms and
    renormalised, i.e. each quadrant's probability weighted by exp(bias); unchanged when `bias` is `None`.
    """
    if bias is None:
        return probabilities
    weighted = probabilities * torch.exp(torch.as_tensor(bias, dtype=probabilities.dtype, device=probabilities.device))
    return weighted / weighted.sum(dim=-1, keepdim=True)


def window_starts(duration_s: float, window_s: float, stride_s: float) -> list[float]:
    """
    Start times of analysis windows over a recording: one window when it fits, else windows every `stride_s` and a
    last one ending exactly at the end, so every window is full length and the whole recording is covered.
    """
    if duration_s <= window_s:
        return [0.0]
    starts = list(np.arange(0.0, duration_s - window_s, stride_s))
    return [float(s) for s in starts] + [duration_s - window_s]


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
        self.frames_per_second = fe.sampling_rate / fe.hop_length
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
            start = self._snap(self.next_regular * self.stride_s)
            if not self.next_regular * self.stride_s < seconds_so_far - self.window_s:
                return starts  # the recording may end before this window does
            last_frame = round(start * self.frames_per_second) + self.processor.feature_extractor.nb_max_frames
            frames_ready = self.features is None or self.first_frame + len(self.features) >= last_frame
            if not (frames_ready and (self.notes is None or notes_final_s >= start + self.window_s)):
                return starts
            starts.append(start)
            self.next_regular += 1

    def remaining(self, duration_s: float) -> list[float]:
        """Starts of the windows not cut yet, once the recording has ended after `duration_s` seconds."""
        return [self._snap(start) for start in window_starts(duration_s, self.window_s, self.stride_s)[self.next_regular :]]

    def cut(self, start: float) -> tuple[dict, int]:
        """The model inputs of the window starting at `start` (from [`ready`] or [`remaining`], in order), and the
        number of notes starting in it. Frames and notes before it are dropped."""
        first = round(start * self.frames_per_second)
        if self.features is not None:
            self.features = self.features[max(0, first - self.first_frame) :]
            self.first_frame = max(self.first_frame, first)
        if self.notes is not None:
            self.notes = self.notes[self.notes[:, 0] >= first / self.frames_per_second]
        inputs = self.processor.window_inputs([(self.features, self.notes, start, self.first_frame)])
        in_window = 0 if self.notes is None else int((self.notes[:, 0] < start + self.window_s).sum())
        return inputs, in_window

    def all_notes(self) -> np.ndarray | None:
        """Every note of the recording (with `keep_notes`), or `None`."""
        return None if self.kept_notes is None else np.concatenate([np.zeros((0, 4))] + self.kept_notes)

    def _snap(self, start: float) -> float:
        return round(start * self.frames_per_second) / self.frames_per_second  # window_inputs snaps to frames too


class MDPianoAudioClassificationPipeline(ChunkPipeline):
    r"""
    Emotion quadrant classification of piano recordings with an mdpiano model.

    Each input streams once, block by block, through decoding and resampling, one STFT and the transcriber (when the
    model reads the symbolic domain); analysis windows of the model's `chunk_length_s` every `stride_length_s` take
    their frames and notes, run through the model `batch_size` windows at a time (8 by default, across inputs too),
    and the quadrant probabilities are averaged over each input's windows.

    Inputs: a path to an audio file or a MIDI file (`.mid`, `.midi`: its notes replace the transcription, and it is
    rendered with FluidSynth for the acoustic domain), encoded audio bytes, a dict `{"array": ..., "sampling_rate":
    ...}` (a `datasets` Audio value) or `{"raw": ..., "sampling_rate": ...}`, a torchcodec `AudioDecoder`, a tuple
    `(array, sampling_rate)`, or an array with `sampling_rate=` given; or a list of those.

    Call arguments:
        top_k (`int`, *optional*): number of labels returned (all four by default).
        sampling_rate (`int`, *optional*): rate of bare array inputs, in Hz.
        stride_length_s (`float`, *optional*): hop between windows; defaults to one window (no overlap).
        return_timeline (`bool`, *optional*, defaults to `False`): return a dict with the overall `labels`, the
            `num_notes` found, and a `timeline` of per-window results (`start`, `end` in seconds, `labels`,
            `num_notes`).
        return_notes (`bool`, *optional*, defaults to `False`): return a dict with the overall `labels`,
            `num_notes`, and the `notes` of the whole input (the transcription, or the MIDI file's notes) as
            [`Note`]s.
        soundfont (`str`, *optional*): SoundFont for rendering MIDI input (default: FluidR3_GM, else TimGM6mb).

    Returns:
        A list of `{"label": "Q1", "score": 0.61}` sorted by score (or, with `return_timeline` or `return_notes`, a
        dict as above).
    """

    _load_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False

    def __init__(self, model, processor=None, feature_extractor=None, tokenizer=None, **kwargs):
        if processor is None:
            processor = self._default_processor(model, feature_extractor)
        # The windows of a recording run through the model together (batches of 8 unless `batch_size` says so).
        kwargs.setdefault("batch_size", DEFAULT_BATCH_SIZE)
        super().__init__(model=model, processor=processor, **kwargs)
        # Batching pads `input_ids` with the tokenizer's pad id and features with the extractor's padding value.
        self.tokenizer = processor.tokenizer
        self.feature_extractor = processor.feature_extractor
        self.model.eval()

    @staticmethod
    def _default_processor(model, feature_extractor=None) -> MDPianoProcessor:
        """The processor saved beside the model, or one built from its config (with default transcription settings)."""
        folder = getattr(model, "name_or_path", "") or ""
        if folder and os.path.isfile(os.path.join(folder, "processor_config.json")):
            return MDPianoProcessor.from_pretrained(folder)
        processor = MDPianoProcessor.from_config(model.config)
        if feature_extractor is not None:
            processor.feature_extractor = feature_extractor
        else:
            logger.warning(
                "No processor was given or found beside the model: using one built from its config, with unfitted "
                "feature statistics. Pass `processor=` (e.g. the one saved with the model) for trained models."
            )
        return processor

    def __call__(self, inputs, **kwargs):
        if isinstance(inputs, (list, tuple)) and len(inputs) == 0:
            raise ValueError("No inputs: pass a recording (path, array, ...) or a non-empty list of them.")
        return super().__call__(inputs, **kwargs)

    @property
    def uses_acoustic(self) -> bool:
        return self.model.config.domains in ("both", "acoustic")

    @property
    def uses_symbolic(self) -> bool:
        return self.model.config.domains in ("both", "symbolic")

    def _sanitize_parameters(
        self,
        top_k=None,
        sampling_rate=None,
        stride_length_s=None,
        return_timeline=None,
        return_notes=None,
        soundfont=None,
        **kwargs,
    ):
        if kwargs:
            raise TypeError(f"Unexpected arguments: {sorted(kwargs)}.")
        preprocess = {}
        if sampling_rate is not None:
            preprocess["sampling_rate"] = sampling_rate
        if stride_length_s is not None:
            if not stride_length_s > 0:
                raise ValueError(f"`stride_length_s` must be positive, got {stride_length_s}.")
            preprocess["stride_length_s"] = stride_length_s
        if soundfont is not None:
            preprocess["soundfont"] = soundfont
        postprocess = {}
        if top_k is not None:
            if top_k < 1:
                raise ValueError(f"`top_k` must be at least 1, got {top_k}.")
            postprocess["top_k"] = min(top_k, self.model.config.num_labels)
        if return_timeline is not None:
            postprocess["return_timeline"] = return_timeline
        if return_notes is not None:
            preprocess["return_notes"] = return_notes  # the input's notes are kept only when asked for
            postprocess["return_notes"] = return_notes
        return preprocess, {}, postprocess

    def preprocess(self, inputs, sampling_rate=None, stride_length_s=None, soundfont=None, return_notes=False):
        window_s = self.feature_extractor.chunk_length_s
        stride_s = stride_length_s or window_s
        cutter = WindowCutter(self.processor, stride_s, self.uses_acoustic, self.uses_symbolic, return_notes)
        seconds = 0.0
        for features, notes, seconds, notes_final_s in self._stream(inputs, sampling_rate, soundfont):
            cutter.add(features, notes)
            for start in cutter.ready(seconds, notes_final_s):
                yield self._window_item(cutter, start, start + window_s)
        starts = cutter.remaining(seconds)
        for index, start in enumerate(starts):
            end = min(start + window_s, seconds) if seconds > 0 else window_s
            yield self._window_item(cutter, start, end, is_last=index == len(starts) - 1)

    def _window_item(self, cutter: WindowCutter, start: float, end: float, is_last: bool = False) -> dict:
        model_inputs, num_notes = cutter.cut(start)
        notes = cutter.all_notes() if is_last else None
        return {
            **model_inputs,
            "is_last": is_last,
            # The input's note count, and its notes when asked for, travel with its last window (every item
            # carries the keys, for batching).
            "total_notes": cutter.total_notes if is_last and cutter.notes is not None else None,
            "notes": notes.tolist() if notes is not None else None,
            "window": (float(start), float(end)),
            "num_notes": num_notes,
        }

    def _stream(self, inputs, sampling_rate, soundfont):
        """
        Yields `(new final frames, new final notes, seconds so far, time before which notes are final)` as one input
        streams block by block through decoding and resampling, the STFT and the transcriber (for the domains the
        model reads; `None` for the others), so a long recording is never held whole. MIDI input comes in one piece:
        its notes, and the features of its rendering.
        """
        rate = self.processor.sampling_rate
        inputs = file_input(inputs)  # a `datasets` value holding only a MIDI path is read as MIDI
        if isinstance(inputs, (str, os.PathLike)) and os.fspath(inputs).lower().endswith(MIDI_SUFFIXES):
            notes = read_midi_notes(inputs)
            if not notes:
                raise ValueError(f"The MIDI file {inputs} has no notes: there is nothing to classify.")
            duration = max(note.offset for note in notes)
            features = None
            if self.uses_acoustic:
                from .rendering_mdpiano import render_midi

                if duration > MAX_RENDER_S:
                    raise ValueError(
                        f"The MIDI file {inputs} lasts {duration / 3600:.1f} h; rendering MIDI to audio for the acoustic "
                        f"domain is limited to {MAX_RENDER_S / 3600:g} h. Split the file, or render it yourself and "
                        "pass the audio."
                    )
                waveform = render_midi(inputs, soundfont=soundfont, sampling_rate=rate)
                features = self.feature_extractor.extract(waveform, normalize=False)
                duration = len(waveform) / rate
            yield features, notes_to_array(notes) if self.uses_symbolic else None, duration, float("inf")
            return
        if isinstance(inputs, dict) and "raw" in inputs:
            inputs = {"array": inputs["raw"], "sampling_rate": inputs.get("sampling_rate")}
        features = self.feature_extractor.stream() if self.uses_acoustic else None
        transcription = self.processor.transcriber.stream() if self.uses_symbolic else None
        samples = 0
        for block in stream_audio(inputs, sampling_rate, rate):
            samples += len(block)
            # The transcriber first: its runs go on in its threads while this one computes the block's features.
            if transcription is not None:
                transcription.feed(block)
            if features is not None:
                features.feed(block)
            yield (
                None if features is None else features.pop_frames(),
                None if transcription is None else transcription.pop_notes(),
                samples / rate,
                float("inf") if transcription is None else transcription.final_until_s(),
            )
        yield (
            None if features is None else features.finish(normalize=False),
            None if transcription is None else transcription.close().pop_notes(),
            samples / rate,
            float("inf"),
        )

    def _forward(self, model_inputs):
        is_last = model_inputs.pop("is_last")
        notes = model_inputs.pop("notes")
        window = model_inputs.pop("window")
        num_notes = model_inputs.pop("num_notes")
        total_notes = model_inputs.pop("total_notes")
        outputs = self.model(**model_inputs)
        return {"logits": outputs.logits, "is_last": is_last, "window": window, "num_notes": num_notes, "notes": notes,
                "total_notes": total_notes}  # fmt: skip

    def postprocess(self, model_outputs, top_k=None, return_timeline=False, return_notes=False):
        id2label = self.model.config.id2label
        top_k = top_k or self.model.config.num_labels
        probabilities = torch.stack([output["logits"].reshape(-1).float().softmax(-1) for output in model_outputs])
        bias = getattr(self.model.config, "quadrant_logit_bias", None)
        labels = self._ranked(apply_quadrant_bias(probabilities.mean(dim=0), bias), id2label, top_k)
        probabilities = apply_quadrant_bias(probabilities, bias)
        if not (return_timeline or return_notes):
            return labels
        notes = model_outputs[-1]["notes"]
        result = {"labels": labels, "num_notes": model_outputs[-1]["total_notes"]}  # None without a symbolic domain
        if return_timeline:
            result["timeline"] = [
                {
                    "start": output["window"][0],
                    "end": output["window"][1],
                    "labels": self._ranked(window_probabilities, id2label, top_k),
                    "num_notes": int(output["num_notes"]),
                }
                for output, window_probabilities in zip(model_outputs, probabilities)
            ]
        if return_notes:
            result["notes"] = [] if notes is None else array_to_notes(np.reshape(notes, (-1, 4)))
        return result

    @staticmethod
    def _ranked(probabilities: torch.Tensor, id2label: dict, top_k: int) -> list[dict]:
        scores, ids = probabilities.topk(top_k)
        return [{"label": id2label[int(i)], "score": float(s)} for s, i in zip(scores, ids)]


__all__ = ["MDPianoAudioClassificationPipeline", "apply_quadrant_bias", "window_starts"]
