"""Emotion quadrant metrics for `evaluate`: 4Q accuracy and macro-F1, per-class scores, confusion matrix, and arousal
and valence accuracy (from the quadrant prediction, and from separate binary predictions when given)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted quadrant indices (0-3 for Q1-Q4).
    references (`list[int]`): true quadrant indices.
    arousal_predictions (`list[int]`, optional): separate high-arousal predictions (1/0), e.g. from an arousal head.
    valence_predictions (`list[int]`, optional): separate positive-valence predictions (1/0).
    labels (`list[str]`, optional): quadrant names, default Q1-Q4.
Returns:
    accuracy, macro_f1 (the mean F1 of the quadrants that occur in references or predictions),
    arousal_accuracy, valence_accuracy (from the quadrant prediction), per_class
    (precision, recall, f1, support per quadrant), confusion_matrix (rows: truth, columns: prediction), and
    arousal_head_accuracy / valence_head_accuracy when separate predictions are given.
"""
# EMOPIA's quadrants: Q1 and Q2 have high arousal, Q1 and Q4 positive valence.
AROUSAL = np.array([1, 1, 0, 0])
VALENCE = np.array([1, 0, 0, 1])


class QuadrantMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}),
        )

    def _compute(self, predictions, references, arousal_predictions=None, valence_predictions=None, labels=None):
        labels = labels or ["Q1", "Q2", "Q3", "Q4"]
        predictions, references = np.asarray(predictions), np.asarray(references)
        confusion = np.zeros((4, 4), dtype=int)
        np.add.at(confusion, (references, predictions), 1)
        per_class = {}
        for index, name in enumerate(labels):
            true_positive = confusion[index, index]
            precision = true_positive / max(confusion[:, index].sum(), 1)
            recall = true_positive / max(confusion[index].sum(), 1)
            f1 = 2 * precision * recall / max(precision + recall, 1e-12)
            per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                               "support": int(confusion[index].sum())}  # fmt: skip
        occurs = (confusion.sum(axis=0) + confusion.sum(axis=1)) > 0
        results = {
            "accuracy": float((predictions == references).mean()),
            # Over the quadrants that occur (in truth or prediction), as scikit-learn does: a test set without a
            # quadrant must not count it as an F1 of 0.
            "macro_f1": float(np.mean([c["f1"] for c, seen in zip(per_class.values(), occurs) if seen])),
            "arousal_accuracy": float((AROUSAL[predictions] == AROUSAL[references]).mean()),
            "valence_accuracy": float((VALENCE[predictions] == VALENCE[references]).mean()),
            "per_class": per_class,
            "confusion_matrix": confusion.tolist(),
        }
        if arousal_predictions is not None:
            results["arousal_head_accuracy"] = float((np.asarray(arousal_predictions) == AROUSAL[references]).mean())
        if valence_predictions is not None:
            results["valence_head_accuracy"] = float((np.asarray(valence_predictions) == VALENCE[references]).mean())
        return results
