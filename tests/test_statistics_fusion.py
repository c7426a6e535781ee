from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import pipeline

from mdpiano import MDPianoConfig, MDPianoForAudioClassification, MDPianoProcessor
from mdpiano.statistics_fusion import (
    check_fusion_settings,
    choose_network_weight,
    fit_statistics_classifier,
    fuse,
    fuse_recording,
    fusion_settings,
    recording_network_weight,
    settings_probabilities,
    statistics_probabilities,
)
from mdpiano.training import Clip, WindowBatcher, predict_clips

NETWORK = np.array([[0.7, 0.1, 0.1, 0.1], [0.4, 0.3, 0.2, 0.1]])
STATISTICS = np.array([[0.1, 0.6, 0.2, 0.1], [0.1, 0.1, 0.1, 0.7]])


def test_fusion_weights_run_from_the_statistics_to_the_network():
    np.testing.assert_allclose(fuse(NETWORK, STATISTICS, 1.0), NETWORK, atol=1e-6)
    np.testing.assert_allclose(fuse(NETWORK, STATISTICS, 0.0), STATISTICS, atol=1e-6)
    half = fuse(NETWORK, STATISTICS, 0.5)
    expected = np.sqrt(NETWORK * STATISTICS)
    np.testing.assert_allclose(half, expected / expected.sum(1, keepdims=True), atol=1e-6)
    assert half.argmax(1).tolist() == [0, 3]  # the network's confident Q1 holds; its unsure one yields to Q4


def test_a_quadrant_the_classifier_never_saw_does_not_veto_the_network():
    statistics = np.array([[0.0, 0.5, 0.0, 0.5]])
    network = np.array([[0.97, 0.01, 0.01, 0.01]])
    fused = fuse(network, statistics, 0.9)
    assert np.isfinite(fused).all() and fused.sum() == pytest.approx(1.0)


def test_fusion_refuses_bad_weights_and_shapes():
    with pytest.raises(ValueError, match=r"network_weight must lie in \[0, 1\]"):
        fuse(NETWORK, STATISTICS, 1.5)
    with pytest.raises(ValueError, match="differ in shape"):
        fuse(NETWORK, STATISTICS[:1], 0.5)
    with pytest.raises(ValueError, match="at least one set"):
        choose_network_weight([])


def test_the_chosen_weight_is_the_best_on_validation_and_ties_go_to_the_network():
    labels = np.array([1, 3])  # the statistics are right on both clips, the network on neither
    weight, scores = choose_network_weight([(NETWORK, STATISTICS, labels)])
    assert scores[weight] == max(scores.values()) == 1.0 and scores[1.0] == 0.0
    assert weight == max(w for w, s in scores.items() if s == 1.0) < 1.0
    weight, scores = choose_network_weight([(NETWORK, NETWORK, np.array([0, 0]))])  # every weight is equally good
    assert weight == 1.0 and set(scores.values()) == {1.0}



def test_equal_mean_accuracies_tie_whatever_their_rounding():
    """Two sets of 198 clips: the network gets 101 + 101 right, the statistics 100 + 102; in floating point
    mean(100/198, 102/198) exceeds mean(101/198, 101/198) by one ulp, and the tie must still go to the network."""
    def clips(network_right: int, statistics_right: int, size: int = 198):
        labels = np.zeros(size, dtype=int)
        network = np.tile([0.0, 1.0, 0.0, 0.0], (size, 1))
        network[:network_right] = [1.0, 0.0, 0.0, 0.0]
        statistics = np.tile([0.0, 0.0, 1.0, 0.0], (size, 1))
        statistics[:statistics_right] = [1.0, 0.0, 0.0, 0.0]
        return network, statistics, labels

    weight, scores = choose_network_weight([clips(101, 100), clips(101, 102)], candidates=(0.0, 1.0))
    assert scores[0.0] != scores[1.0] and scores[0.0] == pytest.approx(scores[1.0])
    assert weight == 1.0


def test_classifier_probabilities_cover_every_quadrant():
    rng = np.random.default_rng(0)
    statistics = rng.normal(size=(40, 3)) + np.repeat([[0, 0, 0], [3, 3, 3]], 20, axis=0)
    classifier = fit_statistics_classifier(statistics, np.repeat([0, 2], 20))
    probabilities = statistics_probabilities(classifier, statistics)
    assert probabilities.shape == (40, 4) and np.allclose(probabilities.sum(1), 1.0)
    assert (probabilities[:, [1, 3]] == 0).all() and (probabilities.argmax(1) == np.repeat([0, 2], 20)).mean() > 0.9


def fitted_settings(network_weight: float, classes=(0, 1, 2, 3), band_limited_network_weight=None) -> dict:
    from mdpiano.note_statistics import NOTE_STATISTICS

    rng = np.random.default_rng(1)
    statistics = rng.normal(size=(80, len(NOTE_STATISTICS))) * 10 + 50
    labels = np.resize(np.array(classes), 80)
    classifier = fit_statistics_classifier(statistics, labels)
    settings = fusion_settings(classifier, network_weight, band_limited_network_weight, trained_on="random numbers")
    return settings, classifier, statistics


@pytest.mark.parametrize("classes", [(0, 1, 2, 3), (0, 2)])
def test_the_stored_classifier_gives_scikit_learns_probabilities(classes):
    settings, classifier, statistics = fitted_settings(0.5, classes)
    check_fusion_settings(settings)
    notes = np.array([[0.0, 1.0, 60, 80], [0.5, 2.0, 64, 70], [1.0, 1.5, 67, 90]])
    from mdpiano.note_statistics import note_statistics

    expected = statistics_probabilities(classifier, note_statistics(notes)[None])[0]
    np.testing.assert_allclose(settings_probabilities(settings, notes), expected, atol=1e-9)


def test_a_recording_with_too_few_notes_keeps_the_network_probabilities():
    settings, _, _ = fitted_settings(0.5)
    np.testing.assert_array_equal(fuse_recording(NETWORK[1], np.zeros((0, 4)), settings), NETWORK[1])

    def notes(count, span_s, start_s=0.0):
        onsets = start_s + np.linspace(0.0, span_s - 0.5, count)
        return np.stack([onsets, onsets + 0.5, 60 + np.arange(count) % 12, np.full(count, 70)], axis=1)

    assert not np.allclose(fuse_recording(NETWORK[1], notes(24, 12.0), settings), NETWORK[1])  # enough: it fuses
    assert not np.allclose(fuse_recording(NETWORK[1], notes(24, 12.0, start_s=60.0), settings), NETWORK[1])
    assert not np.allclose(fuse_recording(NETWORK[1], notes(20, 12.0), settings), NETWORK[1])  # the least that fuses
    for few in (notes(19, 12.0), notes(40, 4.0), notes(40, 4.0, start_s=30.0), notes(1, 0.6, start_s=30.0)):  # a stray note read as 8 notes a second
        np.testing.assert_array_equal(fuse_recording(NETWORK[1], few, settings), NETWORK[1])
    instant = np.array([[0.0, 0.0, 60 + k, 80] for k in range(24)])  # notes that last no time: nothing to read
    np.testing.assert_array_equal(fuse_recording(NETWORK[1], instant, settings), NETWORK[1])


def test_bad_fusion_settings_are_refused_by_the_config():
    settings, _, _ = fitted_settings(0.5)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        MDPianoConfig(note_statistics_fusion={**settings, "mean": settings["mean"][:3]})
    with pytest.raises(ValueError, match="refit it"):
        MDPianoConfig(note_statistics_fusion={**settings, "statistics": ["loudness"]})
    with pytest.raises(ValueError, match="acoustic-only model"):
        MDPianoConfig(domains="acoustic", note_statistics_fusion=settings)
    with pytest.raises(ValueError, match="`midi_note_statistics_fusion` has inconsistent shapes"):
        MDPianoConfig(midi_note_statistics_fusion={**settings, "coef": settings["coef"][:1]})
    with pytest.raises(ValueError, match="acoustic-only model"):
        MDPianoConfig(domains="acoustic", midi_note_statistics_fusion=settings)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        MDPianoConfig(note_statistics_fusion={**settings, "network_weight": -0.1})
    for weight in (1.5, float("nan"), "0.5", None, True):
        with pytest.raises(ValueError, match=r"\['band_limited_network_weight'\]` must lie in \[0, 1\]"):
            MDPianoConfig(note_statistics_fusion={**settings, "band_limited_network_weight": weight})


def test_numpy_weights_are_taken_as_python_numbers(tmp_path):
    settings, _, _ = fitted_settings(0.5)
    check_fusion_settings({**settings, "network_weight": np.float32(0.5), "band_limited_network_weight": np.int64(0)})
    config = MDPianoConfig(note_statistics_fusion={**settings, "network_weight": np.float32(0.5),
                                                   "band_limited_network_weight": np.float64(0.2)})  # fmt: skip
    fusion = config.note_statistics_fusion
    assert type(fusion["network_weight"]) is float and type(fusion["band_limited_network_weight"]) is float
    config.save_pretrained(tmp_path)  # JSON holds Python numbers only
    assert MDPianoConfig.from_pretrained(tmp_path).note_statistics_fusion["band_limited_network_weight"] == 0.2


def test_band_limited_recordings_take_their_own_network_weight():
    settings, _, _ = fitted_settings(0.7, band_limited_network_weight=0.2)
    assert settings["band_limited_network_weight"] == 0.2 and "band_limited_network_weight" not in fitted_settings(0.7)[0]
    assert recording_network_weight(settings) == 0.7 and recording_network_weight(settings, band_limited=True) == 0.2
    without, _, _ = fitted_settings(0.7)  # a fusion chosen without band-limited audio keeps one weight for all
    assert recording_network_weight(without, band_limited=True) == 0.7
    notes = np.stack([np.arange(30.0) * 0.5, np.arange(30.0) * 0.5 + 0.4, 60 + np.arange(30) % 12, np.full(30, 70)], axis=1)
    statistics = settings_probabilities(settings, notes)
    for band_limited, weight in ((False, 0.7), (True, 0.2)):
        np.testing.assert_allclose(fuse_recording(NETWORK[1], notes, settings, band_limited),
                                   fuse(NETWORK[1][None], statistics[None], weight)[0], atol=1e-9)  # fmt: skip


def test_pipeline_and_clip_predictions_fuse_alike(tiny_config, rendered_clip, clip_notes, tmp_path):
    """The pipeline fuses the recording's (calibrated) probabilities with the statistics of all its notes, as the
    cached evaluation does; the fusion survives save_pretrained."""
    path, waveform = rendered_clip
    settings, _, _ = fitted_settings(0.3)
    torch.manual_seed(0)
    plain = MDPianoForAudioClassification(tiny_config).eval()
    processor = MDPianoProcessor.from_config(tiny_config)
    classify = pipeline("audio-classification", model=plain, processor=processor)
    unfused = classify(str(path), return_notes=True)
    fused_model = MDPianoForAudioClassification(MDPianoConfig(**{**tiny_config.to_dict(), "note_statistics_fusion": settings}))
    fused_model.load_state_dict(plain.state_dict())
    fused_model.save_pretrained(tmp_path / "fused")
    reloaded = MDPianoForAudioClassification.from_pretrained(tmp_path / "fused").eval()
    assert reloaded.config.note_statistics_fusion == settings
    fused = pipeline("audio-classification", model=reloaded, processor=processor)(str(path))

    network = np.array([next(r["score"] for r in unfused["labels"] if r["label"] == q) for q in ("Q1", "Q2", "Q3", "Q4")])
    expected = fuse_recording(network, unfused["notes"], settings)
    assert {r["label"]: r["score"] for r in fused} == pytest.approx({q: float(p) for q, p in zip(("Q1", "Q2", "Q3", "Q4"), expected)}, abs=1e-5)

    features = processor.feature_extractor.extract(waveform, normalize=False)
    notes = np.array([[n.onset, n.offset, n.pitch, n.velocity] for n in clip_notes], dtype=np.float32)
    clip = Clip("clip", 0, notes, features, len(waveform) / processor.sampling_rate)
    batcher = WindowBatcher(processor, True)
    np.testing.assert_allclose(
        predict_clips(reloaded, batcher, [clip])["probabilities"][0],
        fuse_recording(predict_clips(plain, batcher, [clip])["probabilities"][0], notes, settings),
        atol=1e-6,
    )


def test_midi_input_is_fused_with_its_own_classifier(tiny_config, clip_midi):
    """MIDI's velocities and note counts would mislead the transcriptions' classifier: MIDI input uses
    `midi_note_statistics_fusion` or, without one, the network alone; audio never uses the MIDI classifier."""
    settings, _, _ = fitted_settings(0.0)  # all statistics: fusing would replace the network's scores
    midi_settings, _, _ = fitted_settings(0.4)
    torch.manual_seed(0)
    plain = MDPianoForAudioClassification(tiny_config).eval()
    processor = MDPianoProcessor.from_config(tiny_config)

    def scores(model, inputs, **kwargs):
        output = pipeline("audio-classification", model=model, processor=processor)(str(inputs), **kwargs)
        return {r["label"]: r["score"] for r in (output["labels"] if kwargs else output)}

    def with_fusion(**fusions):
        model = MDPianoForAudioClassification(MDPianoConfig(**{**tiny_config.to_dict(), **fusions}))
        model.load_state_dict(plain.state_dict())
        return model.eval()

    unfused = pipeline("audio-classification", model=plain, processor=processor)(str(clip_midi), return_notes=True)
    assert scores(with_fusion(note_statistics_fusion=settings), clip_midi) == scores(plain, clip_midi)
    network = np.array([next(r["score"] for r in unfused["labels"] if r["label"] == q) for q in ("Q1", "Q2", "Q3", "Q4")])
    expected = fuse_recording(network, unfused["notes"], midi_settings)
    fused = scores(with_fusion(note_statistics_fusion=settings, midi_note_statistics_fusion=midi_settings), clip_midi)
    assert fused == pytest.approx({q: float(p) for q, p in zip(("Q1", "Q2", "Q3", "Q4"), expected)}, abs=1e-5)
    assert fused != pytest.approx(scores(plain, clip_midi), abs=1e-3)


def test_clip_predictions_fuse_by_symbolic_source(tiny_config, clip_notes):
    """predict_clips applies the fusion of the notes' source, as the pipeline does."""
    settings, _, _ = fitted_settings(0.3)
    midi_settings, _, _ = fitted_settings(0.6)
    torch.manual_seed(0)
    plain = MDPianoForAudioClassification(tiny_config).eval()
    fused_model = MDPianoForAudioClassification(MDPianoConfig(
        **{**tiny_config.to_dict(), "note_statistics_fusion": settings, "midi_note_statistics_fusion": midi_settings}
    )).eval()  # fmt: skip
    fused_model.load_state_dict(plain.state_dict())
    processor = MDPianoProcessor.from_config(tiny_config)
    notes = np.array([[n.onset, n.offset, n.pitch, n.velocity] for n in clip_notes], dtype=np.float32)
    duration = float(notes[:, 1].max())
    features = np.zeros((int(duration * processor.sampling_rate / tiny_config.hop_length), tiny_config.feature_size), np.float32)
    clip = Clip("clip", 0, notes, features, duration)
    batcher = WindowBatcher(processor, True)
    network = predict_clips(plain, batcher, [clip])["probabilities"][0]
    for source, expected in (("transcription", settings), ("midi", midi_settings)):
        np.testing.assert_allclose(predict_clips(fused_model, batcher, [clip], symbolic_source=source)["probabilities"][0],
                                   fuse_recording(network, notes, expected), atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(predict_clips(fused_model, batcher, [clip], fuse=False)["probabilities"][0], network, atol=1e-6)


def test_pipeline_and_clip_predictions_fuse_band_limited_audio_with_its_weight(tiny_config, rendered_clip, tmp_path):
    """A recording sampled below the model's rate takes `band_limited_network_weight` (here: the statistics alone), in
    the pipeline and in the cached evaluation (by the audio file's rate); at the model's rate, the usual weight (here:
    the network alone)."""
    import soundfile
    import soxr
    from datasets import Audio, Dataset

    from mdpiano.caching import cache_dataset
    from mdpiano.training import load_clips

    path, waveform = rendered_clip
    low = tmp_path / "low.wav"
    soundfile.write(low, soxr.resample(waveform, tiny_config.sampling_rate, 16000), 16000, subtype="FLOAT")
    settings, _, _ = fitted_settings(1.0, band_limited_network_weight=0.0)
    torch.manual_seed(0)
    plain = MDPianoForAudioClassification(tiny_config).eval()
    fused_model = MDPianoForAudioClassification(MDPianoConfig(**{**tiny_config.to_dict(), "note_statistics_fusion": settings}))
    fused_model.load_state_dict(plain.state_dict())
    fused_model.eval()
    processor = MDPianoProcessor.from_config(tiny_config)

    def scores(model, audio, **kwargs):
        output = pipeline("audio-classification", model=model, processor=processor)(audio, **kwargs)
        labels = output["labels"] if kwargs else output
        return np.array([next(r["score"] for r in labels if r["label"] == q) for q in ("Q1", "Q2", "Q3", "Q4")]), output

    network, _ = scores(plain, str(low))
    fused, output = scores(fused_model, str(low), return_notes=True)
    statistics = settings_probabilities(settings, output["notes"])
    np.testing.assert_allclose(fused, statistics, atol=1e-5)
    assert not np.allclose(fused, network, atol=1e-3)  # the statistics replace the network's scores
    as_array, _ = scores(fused_model, {"array": soundfile.read(low, dtype="float32")[0], "sampling_rate": 16000})
    np.testing.assert_allclose(as_array, fused, atol=1e-5)
    np.testing.assert_allclose(scores(fused_model, str(path))[0], scores(plain, str(path))[0], atol=1e-5)

    dataset = Dataset.from_dict({"clip_id": ["full", "low"], "label": [0, 0], "audio": [str(path), str(low)]})
    cached = cache_dataset(dataset.cast_column("audio", Audio(decode=False)), processor, tmp_path / "cache", "rates")
    assert cached["source_sampling_rate"] == [tiny_config.sampling_rate, 16000]
    # an entry written before entries recorded the rate: the file's header says it, and nothing is computed again
    entry = cached["notes_path"][1]
    with np.load(entry) as data:
        older = {key: data[key] for key in data.files if key != "source_sampling_rate"}
    np.savez(entry, **older)
    written = Path(entry).stat().st_mtime_ns
    cached = cache_dataset(dataset.cast_column("audio", Audio(decode=False)), processor, tmp_path / "cache", "rates")
    assert cached["source_sampling_rate"] == [tiny_config.sampling_rate, 16000] and Path(entry).stat().st_mtime_ns == written
    clips = load_clips(cached)
    assert [clip.source_sampling_rate for clip in clips] == [tiny_config.sampling_rate, 16000]
    batcher = WindowBatcher(processor, True)
    network = predict_clips(plain, batcher, clips)["probabilities"]
    fused = predict_clips(fused_model, batcher, clips)["probabilities"]
    np.testing.assert_allclose(fused[0], network[0], atol=1e-6)
    np.testing.assert_allclose(fused[1], settings_probabilities(settings, clips[1].notes), atol=1e-6)
