"""
Training-time augmentation of cached acoustic features: recording-chain effects (a reverberant tail, a smooth
random EQ, a noise floor, a gain) applied to the band powers of whole-clip features, with the features derived from
them (MFCCs, RMS, spectral centroid) brought along. It lets training on cached features see recording chains that
the rendered audio did not contain, without re-rendering or re-extracting anything.
"""

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

AMIN_POWER = 1e-10  # the floor of the feature extractor's power_to_db


@dataclass
class FeatureAugmentation:
    """
    Draws one recording chain per call and applies it to unnormalised (frames, feature_size) features of
    `feature_extractor`'s layout ("mixed": log-mel, MFCC, centroid, RMS; or "stft": log magnitudes).

    Args:
        feature_extractor: the `MDPianoFeatureExtractor` that computed the features.
        reverb_probability, max_rt60_s: chance of a reverberant tail, and its longest reverberation time (the tail
            is an exponentially decaying sum of past frames' power, per band).
        eq_db: largest gain of the random EQ's tilt and of its one bell-shaped band.
        noise_probability, min_snr_db: chance of a stationary noise floor, and its loudest level below the clip's
            mean power (its colour is drawn from white to brown).
        gain_db: largest overall level change.
        band_limit_probability, min_band_limit_hz: chance that the band above a random cutoff (from
            `min_band_limit_hz` to the top band) is emptied, as in a recording stored at a lower sampling rate (16 kHz
            keeps up to 8 kHz). 0 by default: the shipped recipe does not band-limit, and then draws nothing for it.
    """

    feature_extractor: object
    reverb_probability: float = 0.5
    max_rt60_s: float = 1.8
    eq_db: float = 8.0
    noise_probability: float = 0.5
    min_snr_db: float = 15.0
    gain_db: float = 10.0
    band_limit_probability: float = 0.0
    min_band_limit_hz: float = 4000.0

    def __post_init__(self):
        import librosa

        fe = self.feature_extractor
        if fe.feature_type == "mixed":
            self.bands = fe.n_mels
            self.band_hz = librosa.mel_frequencies(fe.n_mels + 2, fmin=fe.fmin, fmax=fe.fmax or fe.sampling_rate / 2)[1:-1]
        else:
            self.bands = fe.feature_size
            self.band_hz = librosa.fft_frequencies(sr=fe.sampling_rate, n_fft=fe.n_fft)
        self.frame_s = fe.hop_length / fe.sampling_rate

    def __call__(self, features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """
        Args:
            features: (frames, feature_size) unnormalised features.
            rng: the source of the chain's random draws.

        Returns:
            augmented features, same shape and dtype.
        """
        fe = self.feature_extractor
        features_32 = np.asarray(features, dtype=np.float32)
        power = 10.0 ** (features_32[:, : self.bands] / 10.0)  # (frames, bands)
        augmented = power
        if rng.random() < self.reverb_probability:
            rt60 = rng.uniform(0.3, self.max_rt60_s)
            decay = 10.0 ** (-6.0 * self.frame_s / rt60)  # power falls 60 dB in rt60 seconds
            tail = lfilter([0.0, 1.0 - decay], [1.0, -decay], power, axis=0)
            augmented = augmented + rng.uniform(0.1, 0.6) * tail
        position = np.linspace(-1.0, 1.0, self.bands)
        centre, width = rng.uniform(-1.0, 1.0), rng.uniform(0.1, 0.4)
        tilt_db, bell_db = rng.uniform(-1, 1, size=2) * self.eq_db
        eq_db = tilt_db * position + bell_db * np.exp(-0.5 * ((position - centre) / width) ** 2)
        augmented = augmented * 10.0 ** (eq_db / 10.0)
        if rng.random() < self.noise_probability:
            colour_db = rng.uniform(-20.0, 0.0) * (position + 1.0) / 2.0  # 0 dB tilt (white) to -20 dB (brown-like)
            shape = 10.0 ** (colour_db / 10.0)
            level = augmented.mean() * 10.0 ** (-rng.uniform(self.min_snr_db, 40.0) / 10.0)
            augmented = augmented + level * shape / shape.mean()
        if self.band_limit_probability > 0 and rng.random() < self.band_limit_probability:
            cutoff_hz = rng.uniform(self.min_band_limit_hz, self.band_hz[-1])
            augmented = np.where(self.band_hz > cutoff_hz, 0.0, augmented)  # the floor of power_to_db, as resampled
        augmented = augmented * 10.0 ** (rng.uniform(-1, 1) * self.gain_db / 10.0)

        result = features_32.copy()
        log_power = 10.0 * np.log10(np.maximum(augmented, AMIN_POWER))
        result[:, : self.bands] = log_power
        if fe.feature_type == "mixed":
            n_mels, n_mfcc = fe.n_mels, fe.n_mfcc
            result[:, n_mels : n_mels + n_mfcc] = fe.mfcc_from_log_mel(log_power.T).T
            # Centroid and RMS need the linear spectrum: shift them by what the band powers say changed.
            before, after = power.sum(axis=1), augmented.sum(axis=1)
            centroid_hz_after = (augmented @ self.band_hz) / np.maximum(after, AMIN_POWER)
            centroid_shift_hz = centroid_hz_after - (power @ self.band_hz) / np.maximum(before, AMIN_POWER)
            result[:, n_mels + n_mfcc] += centroid_shift_hz / 1000.0
            result[:, n_mels + n_mfcc + 1] += 10.0 * np.log10(np.maximum(after, AMIN_POWER) / np.maximum(before, AMIN_POWER))
        return result.astype(np.asarray(features).dtype)


__all__ = ["FeatureAugmentation"]
