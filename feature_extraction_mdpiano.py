"""Acoustic features of mdpiano: the paper's mixed feature (log-mel, MFCC, spectral centroid, RMS) or a log STFT."""

from collections.abc import Iterable

import numpy as np
import scipy.fft
import scipy.sparse
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.audio_utils import mel_filter_bank, power_to_db
from transformers.utils import logging

from .audio_mdpiano import MAX_CHANNELS, mono_float32
from .configuration_mdpiano import ACOUSTIC_INPUTS, acoustic_feature_size, check_mel_settings

logger = logging.get_logger(__name__)

STFT_BLOCK_FRAMES = 256  # frames transformed together: bounds the float64 transform's memory on long inputs


def periodic_hann(length: int) -> np.ndarray:
    """The periodic Hann window (float64) that librosa's `stft` uses, computed as scipy's `get_window("hann")`."""
    return 0.5 + 0.5 * np.cos(np.linspace(-np.pi, np.pi, length + 1))[:-1]


class MDPianoFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Computes the acoustic input of mdpiano from mono audio at `sampling_rate`.

    One magnitude STFT per waveform (Hann window `n_fft`, hop `hop_length`, centred frames) gives every feature, with
    librosa's definitions (computed with numpy, scipy.fft and transformers' mel filters: importing librosa's feature
    module costs over a second at start-up):

    - `"mixed"` (the paper's input), per frame in this order: `n_mels` log-mel energies (dB), `n_mfcc` MFCCs of that
      log-mel spectrum, the spectral centroid (kHz) and the RMS energy (dB), so `feature_size = n_mels + n_mfcc + 2`;
    - `"stft"` (the Table 4 ablation): the log-magnitude spectrum (dB), `feature_size = n_fft // 2 + 1`.

    Normalisation: each feature dimension is standardised with `feature_mean` and `feature_std`, statistics fitted on
    training audio by [`~MDPianoFeatureExtractor.fit_normalization`] and saved with the extractor
    (`preprocessor_config.json`, or the processor's `processor_config.json`).
    Before fitting they are `None` and the features are returned in the units above.

    Windows: audio longer than `chunk_length_s` is truncated to its first `chunk_length_s` seconds (recordings
    longer than one window are split by the pipeline), shorter audio is padded with `padding_value` after
    normalisation, and `attention_mask` marks the real frames. Every waveform is processed on its own, so a batch
    gives the same features as its items one at a time.

    Args:
        sampling_rate (`int`, *optional*, defaults to 22050): rate the audio must have, in Hz.
        n_fft (`int`, *optional*, defaults to 2048): FFT size.
        hop_length (`int`, *optional*, defaults to 512): hop between frames.
        n_mels (`int`, *optional*, defaults to 128): mel bands.
        n_mfcc (`int`, *optional*, defaults to 20): MFCC coefficients.
        fmin (`float`, *optional*, defaults to 27.5): lowest mel frequency (Hz).
        fmax (`float`, *optional*): highest mel frequency (Hz); `None` is the Nyquist frequency.
        feature_type (`str`, *optional*, defaults to `"mixed"`): `"mixed"` or `"stft"`.
        chunk_length_s (`float`, *optional*, defaults to 30.0): window length in seconds.
        feature_mean (`list[float]`, *optional*): per-feature mean for standardisation.
        feature_std (`list[float]`, *optional*): per-feature standard deviation for standardisation.
        padding_value (`float`, *optional*, defaults to 0.0): value of padded frames.
        return_attention_mask (`bool`, *optional*, defaults to `True`): return the frame mask by default.
    """

    model_input_names = ["input_features", "attention_mask"]

    def __init__(
        self,
        sampling_rate=22050,
        n_fft=2048,
        hop_length=512,
        n_mels=128,
        n_mfcc=20,
        fmin=27.5,
        fmax=None,
        feature_type="mixed",
        chunk_length_s=30.0,
        feature_mean=None,
        feature_std=None,
        padding_value=0.0,
        return_attention_mask=True,
        **kwargs,
    ):
        if feature_type not in ACOUSTIC_INPUTS:
            raise ValueError(f"`feature_type` must be one of {ACOUSTIC_INPUTS}, got {feature_type!r}.")
        if hop_length <= 0 or n_fft <= 0 or hop_length > n_fft:
            raise ValueError(f"Need 0 < hop_length <= n_fft, got hop_length={hop_length}, n_fft={n_fft}.")
        if not chunk_length_s > 0:
            raise ValueError(f"`chunk_length_s` must be positive, got {chunk_length_s}.")
        if feature_type == "mixed":
            check_mel_settings(sampling_rate, n_mels, n_mfcc, fmin, fmax)
        kwargs.pop("feature_size", None)  # derived from the settings below, saved only for reference
        feature_size = acoustic_feature_size(feature_type, n_fft, n_mels, n_mfcc)
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.n_mfcc = n_mfcc
        self.fmin = fmin
        self.fmax = fmax
        self.feature_type = feature_type
        self.chunk_length_s = chunk_length_s
        self.feature_mean = None if feature_mean is None else [float(v) for v in feature_mean]
        self.feature_std = None if feature_std is None else [float(v) for v in feature_std]
        for name in ("feature_mean", "feature_std"):
            stats = getattr(self, name)
            if stats is not None and len(stats) != feature_size:
                raise ValueError(f"`{name}` has {len(stats)} values, but there are {feature_size} features per frame.")
        if self.feature_std is not None and min(self.feature_std) <= 0:
            raise ValueError("`feature_std` values must be positive.")
        self.mel_filters = self._build_mel_filters() if feature_type == "mixed" else None
        self.window = periodic_hann(n_fft)  # neither is saved (transformers leaves both out of the config)

    def _build_mel_filters(self) -> scipy.sparse.csr_array:
        """
        Slaney-style mel filters (n_mels, n_fft // 2 + 1), as librosa's default `filters.mel`, as a sparse matrix:
        each bin lies under at most two filters, so the projection is 30 times less work than a dense product, and
        it stays on the calling thread (OpenBLAS would wake its threads for the dense one, which then spin for work
        beside the transcriber's).
        """
        dense = mel_filter_bank(
            num_frequency_bins=self.n_fft // 2 + 1,
            num_mel_filters=self.n_mels,
            min_frequency=self.fmin,
            max_frequency=self.sampling_rate / 2 if self.fmax is None else self.fmax,
            sampling_rate=self.sampling_rate,
            norm="slaney",
            mel_scale="slaney",
        ).T.astype(np.float32)
        return scipy.sparse.csr_array(dense)

    @property
    def n_samples(self) -> int:
        """Samples in one window."""
        return int(round(self.chunk_length_s * self.sampling_rate))

    @property
    def frames_per_second(self) -> float:
        """STFT frames per second of audio; analysis windows start on frames."""
        return self.sampling_rate / self.hop_length

    @property
    def nb_max_frames(self) -> int:
        """Frames in one window (centred STFT frames)."""
        return 1 + self.n_samples // self.hop_length

    def __call__(
        self,
        raw_audio: np.ndarray | list[float] | list[np.ndarray],
        sampling_rate: int | None = None,
        padding: bool | str = "max_length",
        truncation: bool = True,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        **kwargs,
    ) -> BatchFeature:
        """
        Featurises one waveform or a batch.

        Args:
            raw_audio: a mono waveform (`np.ndarray` of shape (samples,) or list of floats; integer PCM is scaled
                to [-1, 1]), a batch as a list of such waveforms, or a 2-D array (batch, samples). Multi-channel
                audio must be downmixed first ([`MDPianoProcessor`] does).
            sampling_rate: rate of `raw_audio` in Hz; must equal `self.sampling_rate`.
            padding: `"max_length"` (default) pads every item to one window (to the longest item, if one is longer:
                `truncation=False`), `"longest"` (or `True`) to the longest item of the batch, `False` /
                `"do_not_pad"` leaves lengths as they are (batches must then be equal).
            truncation: cut audio longer than one window to its first `chunk_length_s` seconds.
            return_attention_mask: return the (batch, frames) mask of real frames; defaults to the init setting.
            return_tensors: `"pt"`, `"np"` or `None` (lists).

        Returns:
            [`BatchFeature`] with `input_features` (batch, frames, feature_size) float32 and `attention_mask`
            (batch, frames) int32.
        """
        if sampling_rate is None:
            logger.warning(
                f"No `sampling_rate` passed to {self.__class__.__name__}; assuming {self.sampling_rate} Hz. "
                "Pass it to catch silent errors."
            )
        elif sampling_rate != self.sampling_rate:
            raise ValueError(
                f"{self.__class__.__name__} expects audio at {self.sampling_rate} Hz, got {sampling_rate} Hz. "
                f"Resample it to {self.sampling_rate} Hz first, or pass it through MDPianoProcessor, which resamples."
            )
        waveforms = self._as_batch(raw_audio)
        if truncation:
            waveforms = [w[: self.n_samples] for w in waveforms]
        return self.pad_features([self.extract(w) for w in waveforms], padding, return_attention_mask, return_tensors)

    def pad_features(
        self,
        features: list[np.ndarray],
        padding: bool | str = "max_length",
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
    ) -> BatchFeature:
        """
        Batches normalised (frames, feature_size) arrays, as [`__call__`] does after extraction (`padding` as there).
        Crops of whole-clip features (training) go through this too.
        """
        if padding in (False, "do_not_pad") and len({f.shape[0] for f in features}) > 1:
            raise ValueError("Items of different lengths need padding: use padding='max_length' or 'longest'.")
        # An item longer than a window (not truncated) would stay longer than "max_length" pads the others to.
        if padding is True or (padding == "max_length" and max(f.shape[0] for f in features) > self.nb_max_frames):
            padding = "longest"
        batch = self.pad(
            BatchFeature({"input_features": features}),
            padding=padding,
            max_length=self.nb_max_frames,
            return_attention_mask=self.return_attention_mask if return_attention_mask is None else return_attention_mask,
        )
        batch["input_features"] = [np.asarray(f, dtype=np.float32) for f in batch["input_features"]]
        if "attention_mask" in batch:
            batch["attention_mask"] = [np.asarray(m, dtype=np.int32) for m in batch["attention_mask"]]
        return batch.convert_to_tensors(return_tensors) if return_tensors else batch

    @staticmethod
    def _as_batch(raw_audio) -> list[np.ndarray]:
        if hasattr(raw_audio, "numpy"):  # a tensor: (samples,) or (batch, samples) like an array
            tensor = raw_audio.detach().cpu()
            raw_audio = (tensor.float() if tensor.is_floating_point() else tensor).numpy()  # integer PCM keeps its type
        if isinstance(raw_audio, np.ndarray) and raw_audio.ndim > 2:
            raise ValueError(f"Only mono audio is supported: expected (samples,) or (batch, samples), got {raw_audio.shape}.")
        if isinstance(raw_audio, np.ndarray) and raw_audio.ndim == 2 and raw_audio.shape[1] <= MAX_CHANNELS < raw_audio.shape[0]:
            raise ValueError(
                f"A 2-D array is a batch (batch, samples); shape {raw_audio.shape} looks like one (samples, channels) "
                "recording. Average its channels first (`audio.mean(axis=1)`), or pass it through MDPianoProcessor, "
                "which downmixes."
            )
        is_batched = (isinstance(raw_audio, np.ndarray) and raw_audio.ndim == 2) or (
            isinstance(raw_audio, (list, tuple)) and len(raw_audio) > 0 and isinstance(raw_audio[0], (np.ndarray, list, tuple))
        )
        items = list(raw_audio) if is_batched else [raw_audio]
        waveforms = []
        for index, item in enumerate(items):
            waveform = np.asarray(item)
            if waveform.ndim != 1:
                raise ValueError(f"Only mono audio is supported: item {index} has shape {waveform.shape}.")
            if waveform.size == 0:
                raise ValueError(f"Item {index} of the audio batch is empty (0 samples).")
            waveform = mono_float32(waveform)  # integer PCM scaled to [-1, 1], as the processor reads it
            if not np.isfinite(waveform).all():
                raise ValueError(f"Item {index} of the audio batch contains NaN or infinite samples.")
            waveforms.append(waveform)
        return waveforms

    def extract(self, waveform: np.ndarray, normalize: bool = True) -> np.ndarray:
        """
        Features of one mono waveform at `self.sampling_rate`, without padding or truncation.

        Returns:
            `np.ndarray` of shape (1 + samples // hop_length, feature_size), float32.
        """
        return self.stream().feed(waveform).finish(normalize)

    def stream(self) -> "FeatureStream":
        """A [`FeatureStream`]: the same features from a waveform given block by block."""
        return FeatureStream(self)

    def frame_features(self, segment: np.ndarray) -> np.ndarray:
        """
        Unnormalised features (frames, feature_size) of the STFT frames that fit in `segment` (no padding: frame
        i covers samples i * hop_length to i * hop_length + n_fft). Every feature is computed frame by frame, a block
        of `STFT_BLOCK_FRAMES` at a time, so a long segment needs little more memory than its features.
        """
        frames = np.lib.stride_tricks.sliding_window_view(segment, self.n_fft)[:: self.hop_length]
        blocks = [self._block_features(frames[i : i + STFT_BLOCK_FRAMES]) for i in range(0, len(frames), STFT_BLOCK_FRAMES)]
        return np.concatenate(blocks) if blocks else np.zeros((0, self.feature_size), np.float32)

    def _block_features(self, frames: np.ndarray) -> np.ndarray:
        # float64 transform stored as complex64, as librosa's `stft` of float32 audio: (bins, frames)
        magnitude = np.abs(np.fft.rfft(self.window * frames, axis=-1).astype(np.complex64)).T
        if self.feature_type == "stft":
            features = power_to_db(magnitude**2, min_value=1e-5**2)
        else:
            log_mel = power_to_db(self.mel_filters @ magnitude**2, min_value=1e-10)
            mfcc = self.mfcc_from_log_mel(log_mel)
            centroid_khz = self.spectral_centroid(magnitude) / 1000
            rms_db = power_to_db(self.rms(magnitude) ** 2, min_value=1e-5**2)
            features = np.concatenate([log_mel, mfcc, centroid_khz, rms_db], axis=0)
        return features.T.astype(np.float32)

    def spectral_centroid(self, magnitude: np.ndarray) -> np.ndarray:
        """Spectral centroid in Hz (1, frames) of a magnitude spectrogram (bins, frames), as librosa's (frames with
        no energy give 0)."""
        total = magnitude.astype(np.float64).sum(axis=0, keepdims=True)
        total[total < np.finfo(magnitude.dtype).tiny] = 1.0
        frequencies = np.fft.rfftfreq(self.n_fft, 1.0 / self.sampling_rate)[:, None]
        return np.sum(frequencies * (magnitude / total).astype(magnitude.dtype), axis=0, keepdims=True)

    def rms(self, magnitude: np.ndarray) -> np.ndarray:
        """RMS energy (1, frames) of the frames of a magnitude spectrogram (bins, frames), as librosa's `rms(S=...)`:
        Parseval's sum over the one-sided spectrum."""
        power = magnitude.astype(np.float32) ** 2
        power[0] *= 0.5
        if self.n_fft % 2 == 0:
            power[-1] *= 0.5
        return np.sqrt(2 * np.sum(power, axis=0, keepdims=True) / self.n_fft**2)

    def mfcc_from_log_mel(self, log_mel: np.ndarray) -> np.ndarray:
        """MFCCs (n_mfcc, frames) of a log-mel spectrogram (n_mels, frames) in dB, as the "mixed" feature holds them
        (librosa's `mfcc`: orthonormal DCT-II)."""
        return scipy.fft.dct(log_mel, axis=-2, type=2, norm="ortho")[..., : self.n_mfcc, :]

    def normalize(self, features: np.ndarray) -> np.ndarray:
        """Standardises (frames, feature_size) features with `feature_mean` and `feature_std`, when fitted."""
        features = np.asarray(features, dtype=np.float32)
        if self.feature_mean is None:
            return features
        return (features - np.asarray(self.feature_mean, np.float32)) / np.asarray(self.feature_std, np.float32)

    def fit_normalization(self, waveforms: Iterable[np.ndarray], progress: bool = True) -> "MDPianoFeatureExtractor":
        """
        Fits `feature_mean` and `feature_std` (per feature dimension, over every frame) on training waveforms at
        `self.sampling_rate`, and returns `self`. Each waveform contributes its first window, as at inference.
        """
        from tqdm.auto import tqdm

        waveforms = tqdm(waveforms, desc="Fitting feature statistics", disable=not progress)
        return self.fit_normalization_from_features(
            self.extract(self._as_batch(w)[0][: self.n_samples], normalize=False) for w in waveforms
        )

    def fit_normalization_from_features(self, features: Iterable[np.ndarray]) -> "MDPianoFeatureExtractor":
        """Fits `feature_mean` and `feature_std` on unnormalised (frames, feature_size) arrays; returns `self`."""
        count, total, total_sq = 0, np.zeros(self.feature_size), np.zeros(self.feature_size)
        for array in features:
            array = np.asarray(array, dtype=np.float64)
            count += array.shape[0]
            total += array.sum(axis=0)
            total_sq += (array**2).sum(axis=0)
        if count == 0:
            raise ValueError("Fitting the feature statistics needs at least one frame.")
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        self.feature_mean = mean.tolist()
        self.feature_std = np.maximum(std, 1e-5).tolist()
        return self


class FeatureStream:
    """
    Features of a waveform fed in consecutive blocks, equal to `extract` of the whole waveform: centred STFT
    frames (the signal padded with n_fft / 2 zeros at both ends), each computed once its samples have arrived, so
    only the features and less than one frame of samples are kept.
    """

    def __init__(self, extractor: MDPianoFeatureExtractor):
        self.extractor = extractor
        self.buffer = np.zeros(extractor.n_fft // 2, dtype=np.float32)  # the centred STFT's leading padding
        self.samples = 0
        self.frames = 0
        self.chunks = []

    def feed(self, block: np.ndarray) -> "FeatureStream":
        n_fft, hop = self.extractor.n_fft, self.extractor.hop_length
        self.samples += len(block)
        self.buffer = np.concatenate([self.buffer, np.asarray(block, dtype=np.float32)])
        complete = (len(self.buffer) - n_fft) // hop + 1 if len(self.buffer) >= n_fft else 0
        if complete > 0:
            self.chunks.append(self.extractor.frame_features(self.buffer[: (complete - 1) * hop + n_fft]))
            self.buffer = self.buffer[complete * hop :]
            self.frames += complete
        return self

    def pop_frames(self) -> np.ndarray:
        """The unnormalised frames computed since the last call (all final), handed over and no longer kept."""
        frames = np.concatenate(self.chunks) if self.chunks else np.zeros((0, self.extractor.feature_size), np.float32)
        self.chunks = []
        return frames

    def finish(self, normalize: bool = True) -> np.ndarray:
        """The (1 + samples // hop_length, feature_size) features, normalised if fitted statistics exist; after
        [`pop_frames`], only the frames not popped yet."""
        n_fft, hop = self.extractor.n_fft, self.extractor.hop_length
        remaining = 1 + self.samples // hop - self.frames
        if remaining > 0:  # the last frames reach into the trailing zero padding
            needed = (remaining - 1) * hop + n_fft
            self.chunks.append(self.extractor.frame_features(np.pad(self.buffer, (0, max(0, needed - len(self.buffer))))[:needed]))
        features = np.concatenate(self.chunks) if self.chunks else np.zeros((0, self.extractor.feature_size), np.float32)
        return self.extractor.normalize(features) if normalize else features


__all__ = ["FeatureStream", "MDPianoFeatureExtractor"]
