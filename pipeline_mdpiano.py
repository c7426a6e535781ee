"""The audio-classification pipeline of mdpiano: recordings or MIDI in, emotion quadrant scores out."""

import array
import numbers
import os
import sys
from collections.abc import Iterator, Sequence
from types import GeneratorType

import numpy as np
import torch
from transformers.pipelines.base import ChunkPipeline
from transformers.utils import logging

from .audio_mdpiano import file_input, is_single_audio
from .configuration_mdpiano import check_quadrant_bias
from .notes_mdpiano import array_to_notes, load_midi, notes_to_array, read_midi_notes
from .processing_mdpiano import AnalysisStep, MDPianoProcessor
from .statistics_fusion import fuse_recording, fusion_for_source
from .windowing import WindowCutter, voting_windows

logger = logging.get_logger(__name__)

MIDI_SUFFIXES = (".mid", ".midi")
DEFAULT_BATCH_SIZE = 8
# MIDI input is rendered whole for the acoustic domain (FluidSynth through pretty_midi): cap its length.
MAX_RENDER_S = 3600.0


def apply_quadrant_bias(probabilities: torch.Tensor, bias) -> torch.Tensor:
    """
    Quadrant probabilities (..., 4) with `bias` (`config.quadrant_logit_bias`) added to their logarithms and
    renormalised, i.e. each quadrant's probability weighted by exp(bias); unchanged when `bias` is `None`.

    Raises:
        ValueError: unless `bias` is `None` or one finite number per quadrant (it may have been set after loading).
    """
    check_quadrant_bias(bias)
    if bias is None:
        return probabilities
    weighted = probabilities * torch.exp(torch.as_tensor(bias, dtype=probabilities.dtype, device=probabilities.device))
    return weighted / weighted.sum(dim=-1, keepdim=True)


def is_midi(inputs) -> bool:
    """Whether a pipeline input is a MIDI file (a path, or a `datasets` value holding only one)."""
    inputs = file_input(inputs)
    return isinstance(inputs, (str, os.PathLike)) and os.fspath(inputs).lower().endswith(MIDI_SUFFIXES)


def check_stride(stride_s, feature_extractor, name: str = "`stride_length_s`") -> None:
    """
    Raises:
        ValueError: unless `stride_s` (given as `name`) is a number of seconds from one feature frame of
            `feature_extractor` to its window length: a longer stride would leave the audio between windows
            unanalysed, and windows start on frames, so a shorter one would repeat windows and weigh them twice.
    """
    window_s, frame_s = feature_extractor.chunk_length_s, 1 / feature_extractor.frames_per_second
    is_number = isinstance(stride_s, numbers.Real) and not isinstance(stride_s, bool)
    if not (is_number and 0 < stride_s <= window_s):
        raise ValueError(f"{name} must be a number of seconds above 0 and at most the window length ({window_s:g} s, "
                         f"`chunk_length_s`), got {stride_s!r}: a longer stride leaves audio between windows unanalysed.")  # fmt: skip
    if stride_s < frame_s:
        raise ValueError(f"{name} ({stride_s:g} s) is shorter than one feature frame ({frame_s:.4f} s): windows start on "
                         "frames, so several would start on the same frame and count twice in the average.")  # fmt: skip


def dataset_audio(table):
    """
    The inputs a whole `datasets` Dataset or IterableDataset stands for: its column of `Audio` feature (or, without
    one, its `audio` column), one recording per row; `None` for anything else.

    Raises:
        ValueError: a dataset with several audio columns, or none, naming its columns.
    """
    datasets = sys.modules.get("datasets")  # not imported: `table` cannot be one of its datasets
    if datasets is None or not isinstance(table, (datasets.Dataset, datasets.IterableDataset)):
        return None
    features = table.features or {}
    columns = [name for name, feature in features.items() if isinstance(feature, datasets.Audio)]
    if not columns and "audio" in (table.column_names or []):
        columns = ["audio"]
    if len(columns) != 1:
        raise ValueError(
            f"The dataset has {'several audio columns' if columns else 'no audio column'} (columns: "
            f"{table.column_names}): pass the column holding the recordings or MIDI paths, e.g. "
            f"`dataset[{(columns or table.column_names or ['audio'])[0]!r}]`."
        )
    if isinstance(table, datasets.Dataset):
        return table[columns[0]]  # a column: a batch, as a list is
    return (row[columns[0]] for row in table.select_columns(columns))  # streamed, as a generator is


def _input_name(inputs) -> str:
    """How an error names an input: its path where it has one."""
    path = inputs.get("path") if isinstance(inputs, dict) else inputs
    return f"The recording {os.fspath(path)}" if isinstance(path, (str, os.PathLike)) else "The recording"


class MDPianoAudioClassificationPipeline(ChunkPipeline):
    r"""
    Emotion quadrant classification of piano recordings with an mdpiano model.

    Each input streams once, block by block, through decoding and resampling, one STFT and the transcriber (when the
    model reads the symbolic domain); analysis windows of the model's `chunk_length_s` every `stride_length_s` take
    their frames and notes, run through the model `batch_size` windows at a time (8 by default, across inputs too),
    and the quadrant probabilities are averaged over each input's windows in which notes were found (all of them
    when none has any, or for a model that reads no notes: `windowing.voting_windows`).

    Inputs: a path to an audio file or a MIDI file (`.mid`, `.midi`: its notes replace the transcription, and it is
    rendered with FluidSynth for the acoustic domain), encoded audio bytes, a dict `{"array": ..., "sampling_rate":
    ...}` (a `datasets` Audio value) or `{"raw": ..., "sampling_rate": ...}`, a torchcodec `AudioDecoder`, a tuple
    `(array, sampling_rate)`, or an array with `sampling_rate=` given; or a list of those, a `datasets` column
    (`dataset["audio"]`), or a whole `datasets` Dataset or IterableDataset (its `Audio` column, row by row).

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
        A model that reads no notes (`domains="acoustic"`) transcribes nothing: its `num_notes` and `notes` are
        `None`.
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
        if (rows := dataset_audio(inputs)) is not None:  # a whole `datasets` dataset: its recordings, row by row
            inputs = rows
        if isinstance(inputs, list) and is_single_audio(inputs):  # samples, which the base class would take for a batch
            inputs = np.asarray(inputs)
        elif isinstance(inputs, (array.array, memoryview)):  # samples whose buffer says their type (int16, ...)
            inputs = np.asarray(inputs)
        elif isinstance(inputs, Sequence) and not isinstance(inputs, (list, tuple, str, bytes, bytearray)):
            inputs = list(inputs)  # e.g. a `datasets` column: a batch, as a list is
            inputs = np.asarray(inputs) if is_single_audio(inputs) else inputs
        elif isinstance(inputs, Iterator) and not isinstance(inputs, GeneratorType) and not hasattr(inputs, "read"):
            inputs = (item for item in inputs)  # e.g. `iter(paths)` or `map(...)`: streamed, as a generator is
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
        function_to_apply=None,
        **kwargs,
    ):
        if kwargs:
            raise TypeError(f"Unexpected arguments: {sorted(kwargs)}.")
        # The stock pipeline's option; here the scores are probabilities (softmax, calibrated, fused) by design.
        if function_to_apply is not None and str(getattr(function_to_apply, "value", function_to_apply)).lower() != "softmax":
            raise ValueError(f"function_to_apply={function_to_apply!r} is not available: the scores are the quadrants' "
                             "probabilities (a softmax, with the model's calibration and note-statistics fusion); "
                             "only 'softmax' is accepted.")  # fmt: skip
        preprocess = {}
        if sampling_rate is not None:
            preprocess["sampling_rate"] = sampling_rate
        if stride_length_s is not None:
            # The processor's: also called from the base __init__, before `self.feature_extractor` is set.
            check_stride(stride_length_s, self.processor.feature_extractor)
            preprocess["stride_length_s"] = stride_length_s
        if soundfont is not None:
            preprocess["soundfont"] = soundfont
        postprocess = {}
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
                raise ValueError(f"`top_k` must be a whole number, at least 1, got {top_k!r}.")
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
        # A fusing model needs the whole input's notes, for their statistics, as `return_notes` does. MIDI's notes
        # have a classifier of their own (a transcription's velocities and note counts are not MIDI's), if any.
        source = "midi" if is_midi(inputs) else "transcription"
        fusion = source if fusion_for_source(self.model.config, source) is not None else None
        keep_notes = return_notes or fusion is not None
        cutter = WindowCutter(self.processor, stride_s, self.uses_acoustic, self.uses_symbolic, keep_notes)
        seconds, source_rate = 0.0, self.processor.sampling_rate
        for step in self._stream(inputs, sampling_rate, soundfont):
            seconds, source_rate = step.seconds, step.source_sampling_rate
            cutter.add(step.frames, step.notes)
            for start in cutter.ready(seconds, step.notes_final_s):
                yield self._window_item(cutter, start, start + window_s)
        frames = cutter.first_frame + len(cutter.features) if cutter.features is not None else None
        if frames is not None and frames < self.model.config.min_acoustic_frames:
            # Named here, before the batch forward that would fail on it among other inputs' windows.
            raise ValueError(
                f"{_input_name(inputs)} lasts {seconds:.2f} s, too short to analyse: the model needs at least "
                f"{(self.model.config.min_acoustic_frames - 1) / cutter.frames_per_second:.3f} s of audio."  # frames: 1 + samples // hop
            )
        starts = cutter.remaining(seconds)
        # Sampled below the model's rate, the recording lacks the top of the band the network hears: the fusion may
        # weigh the network less for it (`statistics_fusion.recording_network_weight`).
        band_limited = source_rate < self.processor.sampling_rate
        for index, start in enumerate(starts):
            end = min(start + window_s, seconds) if seconds > 0 else window_s
            yield self._window_item(cutter, start, end, is_last=index == len(starts) - 1, fusion=fusion,
                                    band_limited=band_limited)  # fmt: skip

    def _window_item(self, cutter: WindowCutter, start: float, end: float, is_last: bool = False,
                     fusion: str | None = None, band_limited: bool = False) -> dict:  # fmt: skip
        model_inputs, num_notes = cutter.cut(start)
        notes = cutter.all_notes() if is_last else None
        return {
            **model_inputs,
            "is_last": is_last,
            "fusion": fusion if is_last else None,  # the symbolic source whose fusion applies
            "band_limited": band_limited if is_last else None,
            # The input's note count, and its notes when asked for, travel with its last window (every item
            # carries the keys, for batching).
            "total_notes": cutter.total_notes if is_last and cutter.notes is not None else None,
            "notes": notes.tolist() if notes is not None else None,
            "window": (float(start), float(end)),
            "num_notes": num_notes if cutter.notes is not None else None,  # None: a model that reads no notes
        }

    def _stream(self, inputs, sampling_rate, soundfont):
        """
        Yields [`AnalysisStep`]s (new final frames and notes, seconds so far, time before which notes are final, the
        input's own sampling rate) as one input streams block by block through decoding and resampling, the STFT and
        the transcriber (for the domains the model reads; `None` for the others), so a long recording is never held
        whole. MIDI input comes in one piece: its notes, and the features of its rendering (at the model's rate).
        """
        rate = self.processor.sampling_rate
        inputs = file_input(inputs)  # a `datasets` value holding only a MIDI path is read as MIDI
        if is_midi(inputs):
            notes = read_midi_notes(inputs)
            if not notes:
                raise ValueError(f"The MIDI file {inputs} has no notes: there is nothing to classify.")
            duration = max(note.offset for note in notes)
            features = None
            if self.uses_acoustic:
                from .rendering_mdpiano import render_midi, rendered_duration

                midi = load_midi(inputs)  # parsed once for the check and the rendering
                # What is rendered runs to the last event, a controller change long after the notes included.
                if (rendered := rendered_duration(midi)) > MAX_RENDER_S:
                    raise ValueError(
                        f"The MIDI file {inputs} lasts {rendered / 3600:.1f} h (to its last event); rendering MIDI to "
                        f"audio for the acoustic domain is limited to {MAX_RENDER_S / 3600:g} h. Split the file, or "
                        "render it yourself and pass the audio."
                    )
                waveform = render_midi(midi, soundfont=soundfont, sampling_rate=rate)
                features = self.feature_extractor.extract(waveform, normalize=False)
                duration = len(waveform) / rate
            yield AnalysisStep(features, notes_to_array(notes) if self.uses_symbolic else None, duration, float("inf"), rate)
            return
        yield from self.processor.analysis_stream(inputs, sampling_rate, self.uses_acoustic, self.uses_symbolic)

    def _forward(self, model_inputs):
        is_last = model_inputs.pop("is_last")
        fusion = model_inputs.pop("fusion")
        band_limited = model_inputs.pop("band_limited")
        notes = model_inputs.pop("notes")
        window = model_inputs.pop("window")
        num_notes = model_inputs.pop("num_notes")
        total_notes = model_inputs.pop("total_notes")
        outputs = self.model(**model_inputs)
        return {"logits": outputs.logits, "is_last": is_last, "window": window, "num_notes": num_notes, "notes": notes,
                "total_notes": total_notes, "fusion": fusion, "band_limited": band_limited}  # fmt: skip

    def postprocess(self, model_outputs, top_k=None, return_timeline=False, return_notes=False):
        id2label = self.model.config.id2label
        top_k = top_k or self.model.config.num_labels
        probabilities = torch.stack([output["logits"].reshape(-1).float().softmax(-1) for output in model_outputs])
        bias = getattr(self.model.config, "quadrant_logit_bias", None)
        voting = torch.from_numpy(voting_windows([output["num_notes"] for output in model_outputs]))
        recording = apply_quadrant_bias(probabilities[voting].mean(dim=0), bias)
        notes = model_outputs[-1]["notes"]
        fusion = model_outputs[-1]["fusion"]
        if fusion is not None:  # the timeline's windows stay the network's own
            notes_array = np.reshape(notes, (-1, 4)) if notes is not None else np.zeros((0, 4))
            settings = fusion_for_source(self.model.config, fusion)
            band_limited = bool(model_outputs[-1]["band_limited"])
            recording = torch.from_numpy(fuse_recording(recording.numpy(), notes_array, settings, band_limited)).float()
        labels = self._ranked(recording, id2label, top_k)
        probabilities = apply_quadrant_bias(probabilities, bias)
        if not (return_timeline or return_notes):
            return labels
        result = {"labels": labels, "num_notes": model_outputs[-1]["total_notes"]}  # None without a symbolic domain
        if return_timeline:
            result["timeline"] = [
                {
                    "start": output["window"][0],
                    "end": output["window"][1],
                    "labels": self._ranked(window_probabilities, id2label, top_k),
                    "num_notes": None if output["num_notes"] is None else int(output["num_notes"]),
                }
                for output, window_probabilities in zip(model_outputs, probabilities)
            ]
        if return_notes:  # None from a model that reads no notes (acoustic domain only): nothing was transcribed
            transcribed = model_outputs[-1]["total_notes"] is not None
            result["notes"] = array_to_notes(np.reshape(notes, (-1, 4))) if transcribed else None
        return result

    @staticmethod
    def _ranked(probabilities: torch.Tensor, id2label: dict, top_k: int) -> list[dict]:
        scores, ids = probabilities.topk(top_k)
        return [{"label": id2label[int(i)], "score": float(s)} for s, i in zip(scores, ids)]


__all__ = ["MDPianoAudioClassificationPipeline", "apply_quadrant_bias", "check_stride"]
