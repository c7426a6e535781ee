"""Figures of evaluation results: the confusion matrix and predictions on the valence-arousal plane."""

from pathlib import Path

import numpy as np

QUADRANT_COLORS = {"Q1": "#e6a100", "Q2": "#d1342f", "Q3": "#3b6fb6", "Q4": "#3a9d5d"}


def plot_confusion_matrix(confusion, labels, path, title: str = "") -> Path:
    """Confusion matrix (rows: truth, columns: prediction) with counts and row percentages, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.asarray(confusion)
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    figure, axes = plt.subplots(figsize=(4.6, 4.0), dpi=150)
    image = axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for row in range(len(labels)):
        for column in range(len(labels)):
            color = "white" if rates[row, column] > 0.6 else "black"
            axes.text(column, row, f"{confusion[row, column]}\n{rates[row, column]:.0%}", ha="center", va="center",
                      color=color, fontsize=8)  # fmt: skip
    axes.set_xticks(range(len(labels)), labels)
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return Path(path)


def plot_valence_arousal(probabilities, true_labels, label_names, path, title: str = "") -> Path:
    """
    Each clip at its expected valence and arousal under the predicted quadrant probabilities (Q1 and Q4 count as
    positive valence, Q1 and Q2 as high arousal), coloured by its true quadrant, as a PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probabilities = np.asarray(probabilities)
    valence = probabilities[:, [label_names.index("Q1"), label_names.index("Q4")]].sum(axis=1)
    arousal = probabilities[:, [label_names.index("Q1"), label_names.index("Q2")]].sum(axis=1)
    figure, axes = plt.subplots(figsize=(4.6, 4.6), dpi=150)
    axes.axhline(0.5, color="grey", lw=0.8)
    axes.axvline(0.5, color="grey", lw=0.8)
    for index, name in enumerate(label_names):
        chosen = np.asarray(true_labels) == index
        axes.scatter(valence[chosen], arousal[chosen], s=18, alpha=0.8, color=QUADRANT_COLORS.get(name), label=f"true {name}")
    for name, (x, y) in {"Q1 happy": (0.97, 0.97), "Q2 tense": (0.03, 0.97), "Q3 sad": (0.03, 0.03), "Q4 calm": (0.97, 0.03)}.items():
        axes.text(x, y, name, ha="right" if x > 0.5 else "left", va="top" if y > 0.5 else "bottom", fontsize=8, color="grey")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("P(positive valence)")
    axes.set_ylabel("P(high arousal)")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return Path(path)


__all__ = ["plot_confusion_matrix", "plot_valence_arousal"]
