"""Training-time feature augmentation: effects act on band powers, and derived features stay consistent."""

import numpy as np
import pytest

from mdpiano import MDPianoFeatureExtractor
from mdpiano.feature_augmentation import FeatureAugmentation


@pytest.fixture(scope="module")
def extractor_and_features(rendered_clip):
    _, waveform = rendered_clip
    extractor = MDPianoFeatureExtractor(n_fft=2048, hop_length=1024, n_mels=64)
    return extractor, extractor.extract(waveform, normalize=False).astype(np.float16)


def test_mfccs_follow_the_augmented_log_mel(extractor_and_features):
    extractor, features = extractor_and_features
    augmented = FeatureAugmentation(extractor, reverb_probability=1.0, noise_probability=1.0)(features, np.random.default_rng(0))
    assert augmented.shape == features.shape and augmented.dtype == np.float16 and np.isfinite(augmented).all()
    log_mel = augmented[:, : extractor.n_mels].astype(np.float32)
    mfcc = augmented[:, extractor.n_mels : extractor.n_mels + extractor.n_mfcc].astype(np.float32)
    np.testing.assert_allclose(mfcc, extractor.mfcc_from_log_mel(log_mel.T).T, rtol=2e-3, atol=0.1)
    assert np.abs(augmented.astype(np.float32) - features.astype(np.float32)).mean() > 1.0


def test_a_gain_moves_levels_and_leaves_the_spectral_shape(extractor_and_features):
    extractor, features = extractor_and_features
    gain_only = FeatureAugmentation(extractor, reverb_probability=0.0, noise_probability=0.0, eq_db=0.0)
    augmented = gain_only(features, np.random.default_rng(3)).astype(np.float32)
    original = features.astype(np.float32)
    shift = augmented[:, : extractor.n_mels] - original[:, : extractor.n_mels]
    gain = np.median(shift)
    assert abs(gain) > 0.1 and np.abs(shift - gain).max() < 0.1
    centroid, rms = extractor.n_mels + extractor.n_mfcc, extractor.n_mels + extractor.n_mfcc + 1
    np.testing.assert_allclose(augmented[:, rms] - original[:, rms], gain, atol=0.1)
    np.testing.assert_allclose(augmented[:, centroid], original[:, centroid], atol=5e-3)


def test_a_reverberant_tail_only_adds_energy(extractor_and_features):
    extractor, features = extractor_and_features
    reverb_only = FeatureAugmentation(extractor, reverb_probability=1.0, noise_probability=0.0, eq_db=0.0, gain_db=0.0)
    augmented = reverb_only(features, np.random.default_rng(1)).astype(np.float32)[:, : extractor.n_mels]
    original = features.astype(np.float32)[:, : extractor.n_mels]
    assert (augmented >= original - 0.05).all() and (augmented - original).max() > 3.0


def test_draws_are_reproducible_and_differ_between_seeds(extractor_and_features):
    extractor, features = extractor_and_features
    augment = FeatureAugmentation(extractor)
    first, again = augment(features, np.random.default_rng(5)), augment(features, np.random.default_rng(5))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, augment(features, np.random.default_rng(6)))


def test_stft_features_are_augmented_in_every_bin(extractor_and_features, rendered_clip):
    _, waveform = rendered_clip
    extractor = MDPianoFeatureExtractor(feature_type="stft", n_fft=1024, hop_length=1024)
    features = extractor.extract(waveform[: 22050 * 5], normalize=False)
    augmented = FeatureAugmentation(extractor)(features, np.random.default_rng(0))
    assert augmented.shape == features.shape and np.isfinite(augmented).all()
    # Every STFT bin is a band of its own: the gain, tilt and EQ reach all of them, the top bins as the lowest.
    changed = (np.abs(augmented - features) > 1e-3).any(axis=0)
    assert changed.all(), f"{(~changed).sum()} of {len(changed)} bins left as they were"


def test_a_band_limit_empties_the_bands_above_its_cutoff(extractor_and_features):
    extractor, features = extractor_and_features
    band_limit_only = FeatureAugmentation(extractor, reverb_probability=0.0, noise_probability=0.0, eq_db=0.0,
                                          gain_db=0.0, band_limit_probability=1.0)  # fmt: skip
    augmented = band_limit_only(features, np.random.default_rng(2)).astype(np.float32)
    original = features.astype(np.float32)
    log_mel = augmented[:, : extractor.n_mels]
    emptied = (log_mel == np.float32(np.float16(-100.0))).all(axis=0)  # the floor of power_to_db (1e-10)
    kept = np.abs(log_mel - original[:, : extractor.n_mels]).max(axis=0) < 0.05
    assert emptied.any() and kept.any() and (emptied | kept).all()
    assert np.flatnonzero(emptied).min() > np.flatnonzero(kept).max()  # the top bands, above one cutoff
    assert band_limit_only.band_hz[emptied].min() >= band_limit_only.min_band_limit_hz
    centroid = extractor.n_mels + extractor.n_mfcc
    assert (augmented[:, centroid] <= original[:, centroid] + 5e-3).all()  # less energy up high
    assert FeatureAugmentation(extractor).band_limit_probability == 0.0  # the shipped recipe's chains are full-band
