import numpy as np
import pytest
from transformers import AutoFeatureExtractor

from mdpiano import MDPianoConfig, MDPianoFeatureExtractor

SR = 22050


@pytest.fixture(scope="module")
def extractor():
    return MDPianoFeatureExtractor()


def test_shapes_on_rendered_audio(extractor, rendered_clip):
    _, waveform = rendered_clip
    config = MDPianoConfig()
    batch = extractor(waveform, sampling_rate=SR, return_tensors="np")
    features, mask = batch["input_features"], batch["attention_mask"]
    assert features.shape == (1, config.num_frames, config.feature_size) == (1, extractor.nb_max_frames, extractor.feature_size)
    assert features.dtype == np.float32 and mask.dtype == np.int32
    real_frames = 1 + len(waveform) // extractor.hop_length
    assert mask[0, :real_frames].all() and not mask[0, real_frames:].any()
    assert np.isfinite(features).all()
    assert (features[0, real_frames:] == extractor.padding_value).all()


def test_mixed_feature_values(extractor, rendered_clip):
    _, waveform = rendered_clip
    features = extractor.extract(waveform)
    n_mels, n_mfcc = extractor.n_mels, extractor.n_mfcc
    log_mel, mfcc = features[:, :n_mels], features[:, n_mels : n_mels + n_mfcc]
    centroid_khz, rms_db = features[:, -2], features[:, -1]
    import librosa

    # Each block is what librosa gives on its own.
    mel = librosa.feature.melspectrogram(y=waveform, sr=SR, n_fft=2048, hop_length=512, n_mels=n_mels, fmin=27.5, pad_mode="constant")
    reference_log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)  # absolute dB: no per-clip top_db
    np.testing.assert_allclose(log_mel, reference_log_mel.T, atol=1e-2)
    np.testing.assert_allclose(mfcc, librosa.feature.mfcc(S=reference_log_mel, n_mfcc=n_mfcc).T, rtol=1e-3, atol=5e-2)
    # RMS comes from the Hann-windowed spectrum (one STFT for everything); it follows the plain time-domain RMS.
    time_rms = librosa.feature.rms(y=waveform, frame_length=2048, hop_length=512, pad_mode="constant")[0]
    time_rms_db = librosa.amplitude_to_db(time_rms, ref=1.0, amin=1e-5, top_db=None)
    sounding = time_rms_db > -50
    assert np.corrcoef(rms_db[sounding], time_rms_db[sounding])[0, 1] > 0.98
    assert 0.1 < np.median(centroid_khz[sounding]) < 5.0  # piano: a few hundred Hz to a few kHz
    assert log_mel.max() < 60 and log_mel.min() >= -100
    # Louder audio: higher RMS, same centroid.
    louder = extractor.extract(waveform * 2.0)
    np.testing.assert_allclose(louder[sounding, -1] - rms_db[sounding], 20 * np.log10(2.0), atol=0.05)
    np.testing.assert_allclose(louder[sounding, -2], centroid_khz[sounding], rtol=1e-4)


def test_stft_variant(rendered_clip):
    _, waveform = rendered_clip
    extractor = MDPianoFeatureExtractor(feature_type="stft")
    assert extractor.feature_size == MDPianoConfig(acoustic_input="stft").feature_size == 1025
    features = extractor(waveform[: SR * 5], sampling_rate=SR, return_tensors="np")["input_features"]
    assert features.shape == (1, extractor.nb_max_frames, 1025)


def test_batched_equals_unbatched(extractor, rendered_clip):
    _, waveform = rendered_clip
    items = [waveform[: SR * 3], waveform[SR : SR * 9], waveform[: 11025]]
    batch = extractor(items, sampling_rate=SR, return_tensors="np")
    for index, item in enumerate(items):
        single = extractor(item, sampling_rate=SR, return_tensors="np")
        np.testing.assert_array_equal(batch["input_features"][index], single["input_features"][0])
        np.testing.assert_array_equal(batch["attention_mask"][index], single["attention_mask"][0])
    longest = extractor(items, sampling_rate=SR, padding="longest", return_tensors="np")
    assert longest["input_features"].shape[1] == 1 + (SR * 8) // extractor.hop_length
    np.testing.assert_array_equal(longest["input_features"][2], batch["input_features"][2, : longest["input_features"].shape[1]])


def test_long_audio_is_truncated_to_one_window(extractor):
    noise = np.random.default_rng(0).normal(0, 0.1, SR * 40).astype(np.float32)
    batch = extractor(noise, sampling_rate=SR, return_tensors="np")
    assert batch["input_features"].shape[1] == extractor.nb_max_frames
    assert batch["attention_mask"].all()
    window = extractor(noise[: extractor.n_samples], sampling_rate=SR, return_tensors="np")
    np.testing.assert_array_equal(batch["input_features"], window["input_features"])
    # Untruncated, the default padding pads a batch to its longest item when that is longer than a window.
    whole = extractor([noise[: SR * 3], noise], sampling_rate=SR, truncation=False, return_tensors="pt")
    frames = extractor(noise, sampling_rate=SR, truncation=False, return_tensors="np")["input_features"].shape[1]
    assert tuple(whole["input_features"].shape) == (2, frames, extractor.feature_size) and frames > extractor.nb_max_frames
    assert whole["attention_mask"][1].all() and 0 < whole["attention_mask"][0].sum() < extractor.nb_max_frames


def test_wrong_sampling_rate_is_a_clear_error(extractor):
    with pytest.raises(ValueError, match="expects audio at 22050 Hz, got 44100 Hz"):
        extractor(np.zeros(44100, np.float32), sampling_rate=44100)


@pytest.mark.parametrize(
    "audio, message",
    [
        (np.zeros((2, 3, 100), np.float32), "mono"),
        (np.zeros(0, np.float32), "empty"),
        (np.array([0.0, np.nan, 0.1], np.float32), "NaN"),
        (np.zeros((SR, 2), np.float32), r"looks like one \(samples, channels\) recording"),  # not a batch of 2-sample clips
        (np.array([0, 12000], np.int64), "no PCM format holds 64-bit integers"),
    ],
)
def test_bad_input_is_a_clear_error(extractor, audio, message):
    with pytest.raises(ValueError, match=message):
        extractor(audio, sampling_rate=SR)


def test_integer_pcm_is_scaled_as_the_processor_scales_it(extractor, rendered_clip):
    import torch

    _, waveform = rendered_clip
    pcm = np.round(np.clip(waveform[: 3 * SR], -1, 1) * 32767).astype(np.int16)
    expected = extractor(pcm.astype(np.float32) / 32768, sampling_rate=SR, return_tensors="np")["input_features"]
    for audio in (pcm, torch.from_numpy(pcm), [pcm]):
        np.testing.assert_array_equal(extractor(audio, sampling_rate=SR, return_tensors="np")["input_features"], expected)


def test_silence_and_tiny_input_give_finite_features(extractor):
    for audio in (np.zeros(SR * 2, np.float32), np.zeros(220, np.float32), np.full(3, 0.1, np.float32)):
        features = extractor(audio, sampling_rate=SR, return_tensors="np")["input_features"]
        assert np.isfinite(features).all()


def test_fit_normalization_standardises(rendered_clip):
    _, waveform = rendered_clip
    extractor = MDPianoFeatureExtractor().fit_normalization([waveform[: SR * 10], waveform[SR * 10 :]], progress=False)
    features = np.concatenate([extractor.extract(waveform[: SR * 10]), extractor.extract(waveform[SR * 10 :])])
    np.testing.assert_allclose(features.mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(features.std(axis=0), 1, atol=1e-2)


def test_save_and_load_keeps_statistics(tmp_path, rendered_clip):
    _, waveform = rendered_clip
    extractor = MDPianoFeatureExtractor(hop_length=1024, n_mels=64, chunk_length_s=10.0)
    extractor.fit_normalization([waveform], progress=False)
    extractor.save_pretrained(tmp_path)
    loaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(loaded, MDPianoFeatureExtractor)
    assert loaded.feature_mean == extractor.feature_mean and loaded.hop_length == 1024
    np.testing.assert_array_equal(
        loaded(waveform, sampling_rate=SR, return_tensors="np")["input_features"],
        extractor(waveform, sampling_rate=SR, return_tensors="np")["input_features"],
    )
    assert "mel_filters" not in (tmp_path / "preprocessor_config.json").read_text()


def test_invalid_settings():
    with pytest.raises(ValueError, match="feature_type"):
        MDPianoFeatureExtractor(feature_type="cqt")
    with pytest.raises(ValueError, match="feature_mean"):
        MDPianoFeatureExtractor(feature_mean=[0.0] * 3, feature_std=[1.0] * 3)
    with pytest.raises(ValueError, match=r"`n_mfcc` \(20\) .* `n_mels` \(16\)"):
        MDPianoFeatureExtractor(n_mels=16, n_mfcc=20)
    with pytest.raises(ValueError, match=r"`fmin` \(15000\)"):
        MDPianoFeatureExtractor(fmin=15000)


def test_streamed_features_equal_whole(extractor, rendered_clip):
    import librosa

    _, waveform = rendered_clip
    stream = extractor.stream()
    for start in range(0, len(waveform), 5000):
        stream.feed(waveform[start : start + 5000])
    np.testing.assert_allclose(stream.finish(), extractor.extract(waveform), atol=1e-4)
    # Frames are those of librosa's centred STFT (zero padding of n_fft / 2 at both ends).
    frames = librosa.stft(waveform, n_fft=extractor.n_fft, hop_length=extractor.hop_length, center=True, pad_mode="constant")
    assert extractor.extract(waveform).shape[0] == frames.shape[1]
