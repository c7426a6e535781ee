"""Decision calibration: fitting quadrant offsets on held-out predictions, and applying them."""

import numpy as np
import pytest
import torch
from transformers import pipeline

from mdpiano import MDPianoConfig, MDPianoForAudioClassification, MDPianoProcessor
from mdpiano.calibration import decision_scores, fit_quadrant_bias
from mdpiano.pipeline_mdpiano import apply_quadrant_bias
from mdpiano.training import Clip, WindowBatcher, predict_clips


def skewed_predictions(shift: float, clips: int = 400, seed: int = 0):
    """Probabilities of a fairly good classifier whose Q4 logit is raised by `shift`."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, clips)
    logits = rng.normal(0, 1, (clips, 4)) + 1.5 * np.eye(4)[labels]
    logits[:, 3] += shift
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True), labels


def test_fit_undoes_a_skew_toward_one_quadrant():
    probabilities, labels = skewed_predictions(shift=1.0)
    bias = fit_quadrant_bias(probabilities, labels)
    assert bias[0] == 0 and len(bias) == 4
    assert bias[3] - np.mean(bias[:3]) == pytest.approx(-1.0, abs=0.35)  # Q4 pulled down about as far as it was pushed
    before, after = (decision_scores(probabilities, labels, np.array([b])) for b in ([0, 0, 0, 0], bias))
    assert after[0][0] > before[0][0] + 0.05  # macro-F1


def test_fit_prefers_no_offset_when_none_helps():
    probabilities = np.eye(4)[[0, 1, 2, 3] * 5] * 0.9 + 0.025  # every decision already right
    assert fit_quadrant_bias(probabilities, np.array([0, 1, 2, 3] * 5)) == [0.0, 0.0, 0.0, 0.0]


def test_decision_macro_f1_is_the_evaluation_metric():
    import evaluate

    from mdpiano.training import METRICS_DIR

    probabilities, labels = skewed_predictions(shift=0.5, clips=60)
    keep = labels != 3  # a user's set without Q4: wrong Q4 decisions count, a Q4 absent from both does not
    probabilities, labels = probabilities[keep], labels[keep]
    metric = evaluate.load(str(METRICS_DIR))
    for bias in ([0, 0, 0, 0], [0, 0, 0, -5]):
        decisions = (np.log(probabilities) + bias).argmax(1)
        expected = metric.compute(predictions=decisions, references=labels)["macro_f1"]
        assert decision_scores(probabilities, labels, np.array([bias]))[0][0] == pytest.approx(expected)


def test_fit_rejects_malformed_input():
    with pytest.raises(ValueError, match="shape \\(clips, 4\\)"):
        fit_quadrant_bias(np.ones((3, 3)) / 3, [0, 1, 2])
    with pytest.raises(ValueError, match="quadrant ids"):
        fit_quadrant_bias(np.ones((2, 4)) / 4, [0, 7])


def test_apply_weights_by_exp_bias():
    probabilities = torch.tensor([[0.5, 0.1, 0.1, 0.3]])
    calibrated = apply_quadrant_bias(probabilities, [0.0, 0.0, 0.0, float(np.log(2))])
    assert torch.allclose(calibrated, torch.tensor([[0.5, 0.1, 0.1, 0.6]]) / 1.3)
    assert apply_quadrant_bias(probabilities, None) is probabilities
    for bias in ([0.5], 0.5, [0.0, 0.0, float("nan"), 0.0], "0000", b"\0\0\0\0", [True, 0.0, 0.0, 0.0]):  # e.g. set on a loaded config, unchecked there
        with pytest.raises(ValueError, match="4 finite numbers"):
            apply_quadrant_bias(probabilities, bias)


def test_pipeline_and_clip_predictions_apply_the_config_bias(tiny_config, rendered_clip, clip_notes):
    path, waveform = rendered_clip
    torch.manual_seed(0)
    config = MDPianoConfig(**{**tiny_config.to_dict(), "quadrant_logit_bias": [0.0, 0.0, 30.0, 0.0]})
    model, processor = MDPianoForAudioClassification(config).eval(), MDPianoProcessor.from_config(config)
    result = pipeline("audio-classification", model=model, processor=processor)(str(path))
    assert result[0]["label"] == "Q3" and result[0]["score"] > 0.99

    features = processor.feature_extractor.extract(waveform, normalize=False)
    notes = np.array([[n.onset, n.offset, n.pitch, n.velocity] for n in clip_notes], dtype=np.float32)
    clip = Clip("clip", 0, notes, features, len(waveform) / processor.sampling_rate)
    predictions = predict_clips(model, WindowBatcher(processor, True), [clip])
    assert predictions["probabilities"][0].argmax() == 2 and predictions["probabilities"][0].sum() == pytest.approx(1)
