"""Property-based tests (hypothesis): round trips, batching and score invariants over generated inputs."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import pipeline

from mdpiano import MDPianoFeatureExtractor, MDPianoForAudioClassification, MDPianoProcessor, MDPianoTokenizer, Note

from test_tokenization import assert_round_trip

TOKENIZER = MDPianoTokenizer()
EXTRACTOR = MDPianoFeatureExtractor(chunk_length_s=4.0, n_mels=32)

# Onsets on a coarse grid make chords, repeated keys and overlaps frequent; durations include zero.
notes_strategy = st.lists(
    st.builds(
        lambda onset, duration, pitch, velocity: Note(onset, onset + duration, pitch, velocity),
        st.one_of(st.sampled_from([0.0, 0.5, 0.5, 1.0, 2.0]), st.floats(0, 30, allow_nan=False)),
        st.one_of(st.just(0.0), st.floats(0, 4, allow_nan=False)),
        st.one_of(st.sampled_from([60, 64, 67]), st.integers(0, 127)),
        st.integers(0, 127),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(notes_strategy)
def test_tokenizer_round_trip(notes):
    assert_round_trip(TOKENIZER, notes, TOKENIZER.ids_to_notes(TOKENIZER.notes_to_ids(notes)))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 4 * 22050 + 5000), min_size=1, max_size=4), st.integers(0, 2**32 - 1))
def test_feature_extractor_batched_equals_unbatched(lengths, seed):
    rng = np.random.default_rng(seed)
    waveforms = [rng.normal(0, 0.1, n).astype(np.float32) for n in lengths]
    batch = EXTRACTOR(waveforms, sampling_rate=22050, return_tensors="np")
    for index, waveform in enumerate(waveforms):
        single = EXTRACTOR(waveform, sampling_rate=22050, return_tensors="np")
        np.testing.assert_array_equal(batch["input_features"][index], single["input_features"][0])
        np.testing.assert_array_equal(batch["attention_mask"][index], single["attention_mask"][0])


@pytest.fixture(scope="module")
def classifier(tiny_config):
    torch.manual_seed(0)
    model = MDPianoForAudioClassification(tiny_config).eval()
    return pipeline("audio-classification", model=model, processor=MDPianoProcessor.from_config(tiny_config))


audio_strategy = st.tuples(
    st.sampled_from(["noise", "tones", "silence", "clicks"]),
    st.floats(0.01, 14.0),
    st.sampled_from([8000, 16000, 22050, 44100, 48000]),
    st.floats(1e-4, 1.0),
    st.integers(0, 2**32 - 1),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(audio_strategy)
def test_scores_are_finite_and_sum_to_one(classifier, audio):
    kind, seconds, rate, level, seed = audio
    rng = np.random.default_rng(seed)
    t = np.arange(max(1, int(seconds * rate))) / rate
    waveform = {
        "noise": lambda: rng.normal(0, 1, len(t)),
        "tones": lambda: np.sum([np.sin(2 * np.pi * f * t) for f in rng.uniform(30, 4000, 3)], axis=0),
        "silence": lambda: np.zeros(len(t)),
        "clicks": lambda: (rng.random(len(t)) > 0.999).astype(float),
    }[kind]()
    waveform = (level * waveform / max(np.abs(waveform).max(), 1e-9)).astype(np.float32)
    # Shorter than the ConvNet's pooling needs: a clear error (near that length, resampling decides which side).
    encoder = classifier.model.mdpiano.acoustic_encoder
    frame_s = encoder.frame_seconds
    minimum_s = encoder.min_frames * frame_s
    if len(t) / rate < minimum_s - 2 * frame_s:
        with pytest.raises(ValueError, match="too short to analyse"):
            classifier(waveform, sampling_rate=rate)
        return
    try:
        scores = [r["score"] for r in classifier(waveform, sampling_rate=rate)]
    except ValueError as error:
        assert len(t) / rate < minimum_s + 2 * frame_s and "too short" in str(error)
        return
    assert len(scores) == 4 and all(np.isfinite(scores)) and abs(sum(scores) - 1) < 1e-5
