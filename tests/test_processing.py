import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoProcessor

from mdpiano import MDPianoFeatureExtractor, MDPianoProcessor, MDPianoTokenizer, MDPianoTranscriber, read_midi_notes
from mdpiano.notes_mdpiano import window_notes

SR = 22050


@pytest.fixture(scope="module")
def processor():
    return MDPianoProcessor(MDPianoFeatureExtractor(chunk_length_s=15.0), MDPianoTokenizer())


@pytest.fixture
def no_transcription(monkeypatch):
    """Makes any transcription fail, to prove a code path skips it."""

    def refuse(*args, **kwargs):
        raise AssertionError("transcription was run")

    monkeypatch.setattr(MDPianoTranscriber, "__call__", refuse)


def test_audio_path_gives_both_domains(processor, rendered_clip):
    path, waveform = rendered_clip
    batch = processor(audio=str(path), return_tensors="pt")
    assert set(batch) == {"input_features", "feature_attention_mask", "input_ids", "attention_mask"}
    fe = processor.feature_extractor
    assert batch["input_features"].shape == (1, fe.nb_max_frames, fe.feature_size)
    assert batch["feature_attention_mask"].all()  # 20 s of audio fill the 15-s window
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].shape[1] > 100
    # The symbolic domain is the window's part of the recording's transcription, tokenized; the features are the
    # window's frames of the recording's features (not those of the recording cut to the window).
    notes = processor.tokenizer.decode_notes(batch["input_ids"][0])
    transcribed = window_notes(MDPianoTranscriber()(waveform, SR), 0.0, 15.0)
    assert len(notes) == len(transcribed)
    assert max(abs(a.onset - b[0]) for a, b in zip(sorted(notes), sorted(transcribed.tolist()))) <= 0.005 + 1e-9
    features = fe.normalize(fe.extract(waveform, normalize=False)[: fe.nb_max_frames])
    np.testing.assert_allclose(batch["input_features"][0].numpy(), features, atol=1e-6)


def test_array_at_any_rate_is_resampled_once(processor, rendered_clip):
    _, waveform = rendered_clip
    import librosa

    at_48k = librosa.resample(waveform[: SR * 5], orig_sr=SR, target_sr=48000)
    (loaded,) = processor.load_audio(at_48k, 48000)
    assert abs(len(loaded) - SR * 5) <= 1
    batch = processor(audio=at_48k, sampling_rate=48000, return_tensors="np")
    reference = processor(audio=waveform[: SR * 5], sampling_rate=SR, return_tensors="np")
    valid = reference["feature_attention_mask"][0].astype(bool)
    got, expected = batch["input_features"][0][valid], reference["input_features"][0][valid]
    # Resampling only touches the band near the Nyquist frequency: most values agree to the microdecibel.
    assert np.median(np.abs(got - expected)) < 0.01
    assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.99


def test_batched_equals_unbatched(processor, rendered_clip):
    path, waveform = rendered_clip
    items = [str(path), (waveform[: SR * 4], SR)]
    batch = processor(audio=items, return_tensors="np")
    assert batch["input_features"].shape[0] == batch["input_ids"].shape[0] == 2
    for index, item in enumerate(items):
        single = processor(audio=item, return_tensors="np")
        np.testing.assert_array_equal(batch["input_features"][index], single["input_features"][0])
        length = single["input_ids"].shape[1]
        np.testing.assert_array_equal(batch["input_ids"][index, :length], single["input_ids"][0])
        assert batch["attention_mask"][index].sum() == length


def test_whole_recordings_of_different_lengths_are_padded_to_the_longest(processor, rendered_clip):
    path, waveform = rendered_clip
    items = [(waveform, SR), (waveform[: SR * 4], SR)]
    batch = processor(audio=items, truncation=False, return_tensors="np")
    frames = batch["input_features"].shape[1]
    assert frames > processor.feature_extractor.nb_max_frames  # 20 s: longer than one window, kept whole
    assert batch["feature_attention_mask"][1].sum() < batch["feature_attention_mask"][0].sum() == frames
    with pytest.raises(ValueError, match="use padding='longest'"):
        processor(audio=items, truncation=False, padding="max_length")


def test_feature_attention_mask_whatever_the_extractor_default(processor, rendered_clip):
    """The model needs the mask of real frames: an extractor saved with return_attention_mask=False still gives it."""
    _, waveform = rendered_clip
    extractor = MDPianoFeatureExtractor(**{**processor.feature_extractor.to_dict(), "return_attention_mask": False})
    quiet = MDPianoProcessor(extractor, processor.tokenizer)
    batch = quiet(audio=waveform[: SR * 3], sampling_rate=SR, return_tensors="pt")
    assert batch["feature_attention_mask"].shape == batch["input_features"].shape[:2]


def test_datasets_audio_value(processor, rendered_clip):
    from datasets import Audio, Dataset

    path, _ = rendered_clip
    dataset = Dataset.from_dict({"audio": [str(path)]}).cast_column("audio", Audio())
    from_dataset = processor(audio=dataset[0]["audio"], return_tensors="np")
    from_path = processor(audio=str(path), return_tensors="np")
    for key in from_path:
        np.testing.assert_array_equal(from_dataset[key], from_path[key])
    resampled = Dataset.from_dict({"audio": [str(path)]}).cast_column("audio", Audio(sampling_rate=16000))
    assert processor(audio=resampled[0]["audio"])["input_features"][0].shape[0] == processor.feature_extractor.nb_max_frames


def test_midi_skips_transcription(processor, clip_midi, no_transcription):
    batch = processor(midi=str(clip_midi), return_tensors="pt")
    assert set(batch) == {"input_ids", "attention_mask"}
    window_notes = [n for n in read_midi_notes(clip_midi) if n.onset < 15.0]
    decoded = processor.tokenizer.decode_notes(batch["input_ids"][0])
    assert len(decoded) == len(window_notes)
    assert max(n.offset for n in decoded) <= 15.0


def test_notes_with_audio_skip_transcription(processor, rendered_clip, clip_notes, no_transcription):
    _, waveform = rendered_clip
    batch = processor(audio=waveform, sampling_rate=SR, notes=clip_notes, return_tensors="pt")
    assert {"input_features", "input_ids"} <= set(batch)
    same = processor(notes=clip_notes, return_tensors="pt")
    assert torch.equal(batch["input_ids"], same["input_ids"])
    two = processor(notes=[clip_notes, clip_notes[:5]], return_tensors="pt")
    assert two["input_ids"].shape[0] == 2 and torch.equal(two["input_ids"][0], same["input_ids"][0])


def test_silence_gives_an_empty_symbolic_sequence(processor):
    batch = processor(audio=np.zeros(SR * 3, np.float32), sampling_rate=SR, return_tensors="pt")
    tokenizer = processor.tokenizer
    assert batch["input_ids"].tolist() == [[tokenizer.bos_token_id, tokenizer.eos_token_id]]
    assert torch.isfinite(batch["input_features"]).all()


def test_a_quiet_recording_reads_as_one_at_min_peak(processor, rendered_clip):
    _, waveform = rendered_clip
    at_floor = waveform * np.float32(processor.min_peak / np.abs(waveform).max())
    quiet = at_floor * np.float32(0.1)  # 20 dB under the floor
    expected = processor(audio=at_floor, sampling_rate=SR, return_tensors="np")
    got = processor(audio=quiet, sampling_rate=SR, return_tensors="np")
    np.testing.assert_array_equal(got["input_ids"], expected["input_ids"])
    np.testing.assert_allclose(got["input_features"], expected["input_features"], atol=1e-3)
    as_is = MDPianoProcessor(processor.feature_extractor, processor.tokenizer, min_peak=None)
    assert not np.array_equal(as_is(audio=quiet, sampling_rate=SR, return_tensors="np")["input_ids"], got["input_ids"])


def test_save_and_load_round_trip(tmp_path, rendered_clip):
    _, waveform = rendered_clip
    processor = MDPianoProcessor(
        MDPianoFeatureExtractor(chunk_length_s=10.0, n_mels=64).fit_normalization([waveform], progress=False),
        MDPianoTokenizer(velocity_bins=16, model_max_length=512),
        onset_threshold=0.6,
        minimum_note_length_ms=80.0,
        min_peak=0.1,
    )
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["onset_threshold"] == 0.6 and saved["minimum_note_length_ms"] == 80.0 and saved["min_peak"] == 0.1
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, MDPianoProcessor)
    assert loaded.transcriber.to_dict() == processor.transcriber.to_dict()
    assert loaded.feature_extractor.to_dict() == processor.feature_extractor.to_dict()
    assert loaded.tokenizer.get_vocab() == processor.tokenizer.get_vocab() and loaded.tokenizer.model_max_length == 512
    assert loaded.min_peak == 0.1
    expected = processor(audio=waveform, sampling_rate=SR, return_tensors="np")
    got = loaded(audio=waveform, sampling_rate=SR, return_tensors="np")
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])


def test_loads_as_remote_code_without_the_package(tmp_path, rendered_clip):
    path, _ = rendered_clip
    processor = MDPianoProcessor(MDPianoFeatureExtractor(chunk_length_s=10.0), MDPianoTokenizer())
    processor.save_pretrained(tmp_path / "hub")
    expected = processor(audio=str(path), return_tensors="np")
    np.savez(tmp_path / "expected.npz", **expected)
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["mdpiano"] = None  # the package must not be importable
        sys.path = [p for p in sys.path if p not in ("", {str(os.getcwd())!r})]
        import numpy as np
        from transformers import AutoProcessor
        processor = AutoProcessor.from_pretrained({str(tmp_path / "hub")!r}, trust_remote_code=True)
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
        got = processor(audio={str(path)!r}, return_tensors="np")
        expected = np.load({str(tmp_path / "expected.npz")!r})
        for key in expected.files:
            np.testing.assert_array_equal(got[key], expected[key])
        print("remote code OK")
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote code OK" in result.stdout


def test_readme_three_lines(rendered_clip, clip_midi):
    path, _ = rendered_clip
    # README's three lines, verbatim but for the file names.
    import mdpiano, transformers
    processor = transformers.AutoProcessor.from_pretrained(mdpiano.DEFAULT_MODEL_DIR)
    inputs = processor(audio=str(path), return_tensors="pt")  # or midi="my_score.mid"

    assert isinstance(processor, MDPianoProcessor)
    assert inputs["input_features"].ndim == 3 and inputs["input_ids"].ndim == 2
    assert processor(midi=str(clip_midi), return_tensors="pt")["input_ids"].shape[0] == 1


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({}, ValueError, "Pass `audio`"),
        ({"midi": "a.mid", "notes": []}, ValueError, "either `midi` or `notes`"),
        ({"audio": [np.zeros(SR, np.float32)] * 2, "sampling_rate": SR, "notes": [[], [], []]}, ValueError, "2 recordings but 3"),
        ({"audio": "missing.wav"}, FileNotFoundError, "missing.wav"),
        ({"audio": np.zeros(SR, np.float32)}, ValueError, "sampling rate"),
        ({"audio": [], "sampling_rate": SR}, ValueError, "empty list"),
        ({"midi": "missing.mid"}, FileNotFoundError, "missing.mid"),
        ({"text": "hello"}, TypeError, "Unexpected"),
    ],
)
def test_errors(processor, kwargs, error, message):
    with pytest.raises(error, match=message):
        processor(**kwargs)


@pytest.mark.parametrize("level", [0, 1.5, -0.1, "0.2"])
def test_min_peak_must_be_a_level(level):
    with pytest.raises(ValueError, match="min_peak"):
        MDPianoProcessor(MDPianoFeatureExtractor(), MDPianoTokenizer(), min_peak=level)


def test_a_model_at_another_rate_transcribes_at_basic_pitch_rate(processor, rendered_clip):
    """The features follow the config's rate; basic-pitch always reads 22050 Hz, so the blocks are resampled for it
    (fed at 16 kHz, it heard every note a fifth and a half higher and 27 % earlier)."""
    from mdpiano import MDPianoConfig

    _, waveform = rendered_clip
    at_16k = MDPianoProcessor.from_config(MDPianoConfig(sampling_rate=16000, chunk_length_s=processor.feature_extractor.chunk_length_s))
    reference = processor.first_window(waveform, SR)[1]
    notes = at_16k.first_window(waveform, SR)[1]
    matched = sum(
        any(pitch == other_pitch and abs(onset - other_onset) < 0.05 for other_onset, _, other_pitch, _ in notes)
        for onset, _, pitch, _ in reference
    )
    assert len(reference) > 20 and matched >= 0.9 * len(reference) and abs(len(notes) - len(reference)) <= 0.1 * len(reference)


def test_the_shipped_processor_standardises_with_its_statistics():
    """The shipped model reads features standardised by the statistics of its training set (the tiny test models
    have none, so only this checks that inference applies them): computed here by hand from the raw features."""
    from mdpiano import DEFAULT_MODEL_DIR, load_audio

    shipped = MDPianoProcessor.from_pretrained(DEFAULT_MODEL_DIR)
    fe = shipped.feature_extractor
    assert fe.feature_mean is not None and fe.feature_std is not None
    example = sorted((Path(__file__).resolve().parents[1] / "examples").glob("Q2_*"))[0]
    inputs = shipped(audio=str(example), return_tensors="np")
    waveform = load_audio(str(example), target_sampling_rate=fe.sampling_rate, min_peak=shipped.min_peak)
    raw = fe.extract(waveform, normalize=False)[: fe.nb_max_frames]
    expected = (raw - np.array(fe.feature_mean)) / np.array(fe.feature_std)
    real = inputs["feature_attention_mask"][0].astype(bool)
    np.testing.assert_allclose(inputs["input_features"][0][real], expected[: real.sum()], atol=1e-3)


def test_processor_config_fields_are_the_ones_from_config_reads():
    """Fine-tuning refuses overrides of exactly the config values that a processor is built from."""
    from mdpiano import MDPianoConfig
    from mdpiano.processing_mdpiano import PROCESSOR_CONFIG_FIELDS

    base = MDPianoConfig()
    changed = {"sampling_rate": 16000, "n_fft": 1024, "hop_length": 256, "n_mels": 96, "n_mfcc": 13, "fmin": 30.0,
               "fmax": 8000.0, "acoustic_input": "stft", "chunk_length_s": 5.0, "time_shift_resolution_ms": 20,
               "max_time_shift_ms": 2000, "velocity_bins": 16, "max_harmonic": 4, "max_symbolic_length": 512,
               "d_model": 64, "dropout": 0.2, "num_encoder_layers": 2, "use_auxiliary_losses": False}  # fmt: skip

    def processor_settings(config):
        processor = MDPianoProcessor.from_config(config)
        return json.dumps([processor.feature_extractor.to_dict(), processor.tokenizer.init_kwargs], sort_keys=True, default=str)

    reference = processor_settings(base)
    read = {name for name, value in changed.items()
            if processor_settings(MDPianoConfig(**{name: value})) != reference}  # fmt: skip
    assert read == set(PROCESSOR_CONFIG_FIELDS)
