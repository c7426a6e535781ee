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
    labels (`list[str]`, optional): the quadrant each index stands for, default ["Q1", "Q2", "Q3", "Q4"]; arousal
        and valence follow the names, whatever their order.
Returns:
    accuracy, macro_f1 (the mean F1 of the quadrants that occur in references or predictions),
    arousal_accuracy, valence_accuracy (from the quadrant prediction), per_class
    (precision, recall, f1, support per quadrant), confusion_matrix (rows: truth, columns: prediction), and
    arousal_head_accuracy / valence_head_accuracy when separate predictions are given.
"""
# EMOPIA's quadrants: Q1 and Q2 have high arousal, Q1 and Q4 positive valence.
HIGH_AROUSAL = {"Q1": 1, "Q2": 1, "Q3": 0, "Q4": 0}
POSITIVE_VALENCE = {"Q1": 1, "Q2": 0, "Q3": 0, "Q4": 1}


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
        if sorted(labels) != sorted(HIGH_AROUSAL):
            raise ValueError(f"labels must name the four quadrants Q1-Q4, one per index, got {labels}.")
        predictions, references = np.asarray(predictions), np.asarray(references)
        if references.size == 0:
            raise ValueError("No clips to score: predictions and references are empty.")
        for name, values in (("predictions", predictions), ("references", references)):
            if values.size and not ((values >= 0) & (values < 4)).all():
                raise ValueError(f"{name} must be quadrant indices 0-3, got {sorted(set(values.tolist()) - set(range(4)))}.")
        arousal = np.array([HIGH_AROUSAL[name] for name in labels])  # by index
        valence = np.array([POSITIVE_VALENCE[name] for name in labels])
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
            "arousal_accuracy": float((arousal[predictions] == arousal[references]).mean()),
            "valence_accuracy": float((valence[predictions] == valence[references]).mean()),
            "per_class": per_class,
            "confusion_matrix": confusion.tolist(),
        }
        for name, head, truth in (("arousal", arousal_predictions, arousal), ("valence", valence_predictions, valence)):
            if head is not None:
                results[f"{name}_head_accuracy"] = float((_binary_predictions(head, name, len(references)) == truth[references]).mean())
        return results


def _binary_predictions(values, name: str, clips: int) -> np.ndarray:
    """
    Raises:
        ValueError: unless `values` holds one 0/1 decision per clip (not probabilities: threshold them first).
    """
    values = np.asarray(values)
    if values.shape != (clips,):
        raise ValueError(f"{name}_predictions needs one value per clip ({clips}), got shape {values.shape}.")
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"{name}_predictions must be 0/1 decisions (threshold probabilities first), got "
                         f"{sorted(set(values.tolist()) - {0, 1})[:5]}.")  # fmt: skip
    return values
