"""
The note-statistics classifier (`scripts/baseline.py`), and its late fusion with the network.

The classifier is a logistic regression on a clip's nine note statistics (`note_statistics.py`). Fusion is
log-linear: a clip's fused quadrant probabilities are proportional to `p_network ** w * p_statistics ** (1 - w)`,
with the network weight `w` chosen on validation audio, never on the test split.
"""

import numpy as np

NETWORK_WEIGHTS = tuple(np.round(np.linspace(0.0, 1.0, 11), 1))  # the candidates `choose_network_weight` tries
_FLOOR = 1e-9  # keeps a zero probability (a quadrant the classifier never saw) from vetoing the fusion


def fit_statistics_classifier(statistics: np.ndarray, labels: np.ndarray):
    """Standardised statistics (clips, features) into a multinomial logistic regression (scikit-learn's defaults;
    deterministic: no seed to choose)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(statistics, labels)


def statistics_probabilities(classifier, statistics: np.ndarray, num_labels: int = 4) -> np.ndarray:
    """(clips, num_labels) probabilities; zero for a quadrant absent from the training labels."""
    probabilities = np.zeros((len(statistics), num_labels))
    probabilities[:, classifier.classes_] = classifier.predict_proba(statistics)
    return probabilities


def fuse(network: np.ndarray, statistics: np.ndarray, network_weight: float) -> np.ndarray:
    """
    Log-linear fusion of two (clips, quadrants) probability arrays: 1 keeps the network's, 0 the statistics'.

    Returns:
        (clips, quadrants) probabilities, each row summing to 1.
    """
    if not 0.0 <= network_weight <= 1.0:
        raise ValueError(f"network_weight must lie in [0, 1], got {network_weight}.")
    if network.shape != statistics.shape:
        raise ValueError(f"Probability arrays differ in shape: {network.shape} and {statistics.shape}.")
    log_fused = network_weight * np.log(network + _FLOOR) + (1.0 - network_weight) * np.log(statistics + _FLOOR)
    fused = np.exp(log_fused - log_fused.max(axis=1, keepdims=True))
    return fused / fused.sum(axis=1, keepdims=True)


def choose_network_weight(sets: list[tuple[np.ndarray, np.ndarray, np.ndarray]], candidates=NETWORK_WEIGHTS):
    """
    The network weight with the best 4Q accuracy averaged over `sets`, each (network probabilities, statistics
    probabilities, labels); of equally good weights, the largest (the network's own decisions are the default).

    Returns:
        (weight, `{weight: mean accuracy}` for every candidate).
    """
    if not sets:
        raise ValueError("choose_network_weight needs at least one set of validation clips.")
    scores = {
        float(weight): float(np.mean([(fuse(network, stats, weight).argmax(1) == labels).mean() for network, stats, labels in sets]))
        for weight in candidates
    }
    best = max(scores.values())
    return max(weight for weight, score in scores.items() if score == best), scores


__all__ = ["NETWORK_WEIGHTS", "choose_network_weight", "fit_statistics_classifier", "fuse", "statistics_probabilities"]
