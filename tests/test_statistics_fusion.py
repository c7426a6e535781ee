import numpy as np
import pytest

from mdpiano.statistics_fusion import choose_network_weight, fit_statistics_classifier, fuse, statistics_probabilities

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


def test_classifier_probabilities_cover_every_quadrant():
    rng = np.random.default_rng(0)
    statistics = rng.normal(size=(40, 3)) + np.repeat([[0, 0, 0], [3, 3, 3]], 20, axis=0)
    classifier = fit_statistics_classifier(statistics, np.repeat([0, 2], 20))
    probabilities = statistics_probabilities(classifier, statistics)
    assert probabilities.shape == (40, 4) and np.allclose(probabilities.sum(1), 1.0)
    assert (probabilities[:, [1, 3]] == 0).all() and (probabilities.argmax(1) == np.repeat([0, 2], 20)).mean() > 0.9
