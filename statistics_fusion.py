"""
The note-statistics classifier (`scripts/baseline.py`), and its late fusion with the network.

The classifier is a logistic regression on a clip's nine note statistics (`note_statistics.py`). Fusion is
log-linear: a clip's fused quadrant probabilities are proportional to `p_network ** w * p_statistics ** (1 - w)`,
with the network weight `w` chosen on validation audio, never on the test split. A model fuses transcribed notes when
its config holds `note_statistics_fusion` ([`fusion_settings`]), and ground-truth MIDI notes (MIDI input) when it holds
`midi_note_statistics_fusion`: a classifier of its own, since MIDI's velocities and note counts are not a
transcription's. Both are plain numbers, applied here with numpy alone, so the fusion also runs as Hub remote code.

A recording sampled below the model's rate lacks the top of the band the network hears (training audio always had
it), while its transcription, and so its note statistics, hardly change: the fusion may hold a network weight of
its own for such recordings, `band_limited_network_weight`, chosen on validation audio resampled to a lower rate.
"""

import numbers

import numpy as np

from .note_statistics import NOTE_STATISTICS, note_statistics
from .notes_mdpiano import notes_to_array

# The config field holding the fusion for notes from each symbolic source.
FUSION_FIELDS = {"transcription": "note_statistics_fusion", "midi": "midi_note_statistics_fusion"}
NETWORK_WEIGHTS = tuple(np.round(np.linspace(0.0, 1.0, 11), 1))  # the candidates `choose_network_weight` tries
# The least a recording's notes must hold for their statistics to be fused (see `fuse_recording`).
MIN_FUSION_NOTES, MIN_FUSION_SPAN_S = 20, 5.0
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


def fusion_settings(classifier, network_weight: float, band_limited_network_weight: float | None = None,
                    **provenance) -> dict:  # fmt: skip
    """The `config.note_statistics_fusion` of a fitted [`fit_statistics_classifier`] and a network weight (and one
    for recordings sampled below the model's rate, if given), plus `provenance` (e.g. `trained_on`,
    `weight_chosen_on`) to say where they came from."""
    scaler, regression = classifier[0], classifier[-1]
    band_limited = {} if band_limited_network_weight is None else {"band_limited_network_weight": float(band_limited_network_weight)}
    return {
        "statistics": list(NOTE_STATISTICS),
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
        "classes": [int(c) for c in regression.classes_],
        "coef": regression.coef_.tolist(),
        "intercept": regression.intercept_.tolist(),
        "network_weight": float(network_weight),
        **band_limited,
        **provenance,
    }


def fusion_for_source(config, symbolic_source: str) -> dict | None:
    """The fusion settings `config` applies to notes from `symbolic_source` ("transcription" or "midi"), or `None`."""
    if symbolic_source not in FUSION_FIELDS:
        raise ValueError(f"symbolic_source must be one of {sorted(FUSION_FIELDS)}, got {symbolic_source!r}.")
    return getattr(config, FUSION_FIELDS[symbolic_source], None)


def check_fusion_settings(settings: dict, num_labels: int = 4, field: str = "note_statistics_fusion") -> None:
    """
    Raises:
        ValueError: naming what in `settings` (the config's `field`) is missing or inconsistent.
    """
    missing = {"statistics", "mean", "scale", "classes", "coef", "intercept", "network_weight"} - set(settings)
    if missing:
        raise ValueError(f"`{field}` lacks {sorted(missing)}; build it with statistics_fusion.fusion_settings.")
    if list(settings["statistics"]) != list(NOTE_STATISTICS):
        raise ValueError(f"`{field}` was fitted on the statistics {settings['statistics']}, not "
                         f"mdpiano's {list(NOTE_STATISTICS)}: refit it.")  # fmt: skip
    features, classes = len(NOTE_STATISTICS), settings["classes"]
    coef = np.asarray(settings["coef"], dtype=float)
    rows = 1 if len(classes) == 2 else len(classes)  # scikit-learn's binary regression keeps one row
    shapes_agree = (len(settings["mean"]) == len(settings["scale"]) == features and coef.shape == (rows, features)
                    and len(settings["intercept"]) == rows)  # fmt: skip
    if not shapes_agree or not set(classes) <= set(range(num_labels)) or len(set(classes)) < 2:
        raise ValueError(f"`{field}` has inconsistent shapes or classes: mean and scale need one value per "
                         "statistic, coef one row per class, classes two or more label ids.")  # fmt: skip
    for key in ("network_weight", "band_limited_network_weight"):
        weight = settings.get(key, 0.0)
        if isinstance(weight, (bool, np.bool_)) or not isinstance(weight, numbers.Real) or not 0.0 <= weight <= 1.0:
            raise ValueError(f"`{field}['{key}']` must lie in [0, 1], got {weight!r}.")


def recording_network_weight(settings: dict, band_limited: bool = False) -> float:
    """The network's weight in the fusion of `settings` for a recording; `band_limited`: one sampled below the
    model's rate, which takes `band_limited_network_weight` where the settings hold one."""
    return settings.get("band_limited_network_weight", settings["network_weight"]) if band_limited else settings["network_weight"]


def settings_probabilities(settings: dict, notes, num_labels: int = 4) -> np.ndarray:
    """
    The classifier of `settings` on one recording's notes (their statistics over the time they span), as
    scikit-learn's `predict_proba` gives it.

    Returns:
        (num_labels,) probabilities; zero for a label the classifier never saw.
    """
    standardised = (note_statistics(notes) - np.asarray(settings["mean"])) / np.asarray(settings["scale"])
    logits = np.asarray(settings["coef"]) @ standardised + np.asarray(settings["intercept"])
    if len(settings["classes"]) == 2:  # a binary regression's one row is the second class's logit against 0
        logits = np.array([0.0, logits[0]])
    exponentials = np.exp(logits - logits.max())
    probabilities = np.zeros(num_labels)
    probabilities[settings["classes"]] = exponentials / exponentials.sum()
    return probabilities


def fuse_recording(network: np.ndarray, notes, settings: dict, band_limited: bool = False) -> np.ndarray:
    """
    (num_labels,) network probabilities of one recording fused with the classifier of `settings` on its notes, with
    the network weight for recordings sampled below the model's rate when `band_limited`
    ([`recording_network_weight`]). A recording with fewer than `MIN_FUSION_NOTES` notes, or notes spanning less than `MIN_FUSION_SPAN_S`, keeps the
    network's: the classifier was fitted on clips of 18 s or more with 40 notes or more, and a few notes (silence or
    noise with a stray note) give rates and durations far from any it saw, where it is confidently arbitrary (one
    0.1-s note read as 8 notes a second).
    """
    notes = notes_to_array(notes)
    if len(notes) < MIN_FUSION_NOTES or notes[:, 1].max() - notes[:, 0].min() < MIN_FUSION_SPAN_S:
        return np.asarray(network)
    statistics = settings_probabilities(settings, notes, len(network))
    return fuse(np.asarray(network)[None], statistics[None], recording_network_weight(settings, band_limited))[0]


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
    # Rounded, so that equal accuracies reached by different sums of per-set fractions tie as the rule says.
    rounded = {weight: round(score, 9) for weight, score in scores.items()}
    best = max(rounded.values())
    return max(weight for weight, score in rounded.items() if score == best), scores


__all__ = [
    "FUSION_FIELDS",
    "MIN_FUSION_NOTES",
    "MIN_FUSION_SPAN_S",
    "NETWORK_WEIGHTS",
    "check_fusion_settings",
    "choose_network_weight",
    "fit_statistics_classifier",
    "fuse",
    "fusion_for_source",
    "fuse_recording",
    "fusion_settings",
    "recording_network_weight",
    "settings_probabilities",
    "statistics_probabilities",
]
