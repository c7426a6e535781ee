"""
Decision calibration: offsets added to the log of a recording's quadrant probabilities, fitted on held-out
validation predictions after training, so that a model that favours some quadrants on audio unlike its training
audio is pulled back toward balanced decisions. Stored as `config.quadrant_logit_bias`; the pipeline and
`training.predict_clips` apply it.
"""

import numpy as np

BIAS_GRID = np.round(np.arange(-1.5, 1.51, 0.1), 2)


def decision_scores(probabilities: np.ndarray, labels: np.ndarray, biases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Macro-F1 and accuracy of the decisions argmax(log p + bias), for each row of `biases`.

    Args:
        probabilities (`np.ndarray` of shape (clips, 4)): clip-level quadrant probabilities.
        labels (`np.ndarray` of shape (clips,)): true quadrant ids 0-3.
        biases (`np.ndarray` of shape (candidates, 4)): offsets to score.

    Returns:
        two `np.ndarray` of shape (candidates,): macro-F1 and accuracy. Macro-F1 averages over the quadrants that
        occur among the labels or the decisions, as the evaluation's metric does (a quadrant absent from both is
        no error).
    """
    decisions = (np.log(np.clip(probabilities, 1e-12, 1))[None] + biases[:, None, :]).argmax(-1)  # (candidates, clips)
    f1, present = [], []
    for quadrant in range(4):
        true_positives = ((decisions == quadrant) & (labels == quadrant)).sum(1)
        predicted, actual = (decisions == quadrant).sum(1), (labels == quadrant).sum()
        f1.append(2 * true_positives / np.maximum(predicted + actual, 1))
        present.append(predicted + actual > 0)
    return np.sum(f1, axis=0) / np.maximum(np.sum(present, axis=0), 1), (decisions == labels).mean(1)


def fit_quadrant_bias(probabilities, labels, grid: np.ndarray = BIAS_GRID) -> list[float]:
    """
    The offsets (Q1's fixed at 0, Q2-Q4 searched over `grid`) that maximise macro-F1 of the decisions on held-out
    clips, then accuracy, then stay closest to no offset at all.

    Args:
        probabilities (array-like of shape (clips, 4)): the uncalibrated model's clip-level quadrant probabilities.
        labels (array-like of shape (clips,)): true quadrant ids 0-3.

    Returns:
        `list[float]` of 4 offsets, for `config.quadrant_logit_bias`.
    """
    probabilities, labels = np.asarray(probabilities, dtype=np.float64), np.asarray(labels)
    if probabilities.ndim != 2 or probabilities.shape[1] != 4 or len(probabilities) == 0:
        raise ValueError(f"`probabilities` must have shape (clips, 4) with at least one clip, got {probabilities.shape}.")
    if labels.shape != (len(probabilities),) or not np.isin(labels, range(4)).all():
        raise ValueError(f"`labels` must be {len(probabilities)} quadrant ids in 0-3, got shape {labels.shape}.")
    offsets = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)
    candidates = np.concatenate([np.zeros((len(offsets), 1)), offsets], axis=1)
    chunks = np.array_split(candidates, max(1, len(candidates) // 2048))  # bounds the (candidates, clips) arrays
    scores = [decision_scores(probabilities, labels, chunk) for chunk in chunks]
    macro_f1, accuracy = (np.concatenate(parts) for parts in zip(*scores))
    best = np.lexsort((np.abs(candidates).sum(1), -accuracy.round(9), -macro_f1.round(9)))[0]
    return [float(b) for b in candidates[best]]


def calibrate(probabilities, labels) -> tuple[list[float], dict]:
    """
    [`fit_quadrant_bias`] with what it changes on the clips it was fitted on.

    Returns:
        the 4 offsets, and `{"macro_f1": (before, after), "accuracy": (before, after)}` on those clips.
    """
    bias = fit_quadrant_bias(probabilities, labels)
    f1, accuracy = decision_scores(np.asarray(probabilities), np.asarray(labels), np.array([[0.0] * 4, bias]))
    return bias, {"macro_f1": tuple(map(float, f1)), "accuracy": tuple(map(float, accuracy))}


__all__ = ["BIAS_GRID", "calibrate", "decision_scores", "fit_quadrant_bias"]
