"""Figures: evaluation results (confusion matrix, valence-arousal plane), the benchmark's memory profiles, and the
demo's views of one prediction."""

import math
from pathlib import Path

import numpy as np

QUADRANT_COLORS = {"Q1": "#e6a100", "Q2": "#d1342f", "Q3": "#3b6fb6", "Q4": "#3a9d5d"}


def pyplot():
    """`matplotlib.pyplot`, drawing to files (Agg); an ImportError that says how to install it when it is missing."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("Figures need matplotlib: `pip install 'mdpiano[eval]'` (or `pip install matplotlib`).") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(confusion, labels, path, title: str = "") -> Path:
    """Confusion matrix (rows: truth, columns: prediction) with counts and row percentages, as a PNG."""
    plt = pyplot()
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
    plt = pyplot()
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


def plot_memory_profiles(profiles: dict, path, title: str = "") -> Path:
    """
    Resident memory during classification of each file (`{name: memory_profile(...)}`, from
    `benchmarking.memory_profile`), against the share of its classification done, with its peak and its memory once
    the pipeline was loaded, as a PNG: flat lines mean memory that does not grow with the recording.
    """
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 3.6), dpi=150)
    for (name, profile), color in zip(profiles.items(), ("#3b6fb6", "#d1342f", "#3a9d5d", "#e6a100")):
        seconds = np.asarray(profile["seconds"])
        axes.plot(seconds / max(seconds[-1], 1e-9), profile["rss_mb"], color=color, lw=0.9,
                  label=f"{name} ({seconds[-1]:.0f} s; peak {profile['peak_mb']:.0f} MB)")  # fmt: skip
        axes.axhline(profile["peak_mb"], color=color, lw=0.8, ls="--")
    loaded = min(profile["loaded_mb"] for profile in profiles.values())
    axes.axhline(loaded, color="grey", lw=0.8, ls=":", label=f"pipeline loaded ({loaded:.0f} MB)")
    axes.set_xlim(0, 1)
    axes.set_xlabel("share of the classification done")
    axes.set_ylabel("resident memory (MB)")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return Path(path)


def _figure(width, height):
    return pyplot().subplots(figsize=(width, height), dpi=110)


def quadrant_point(scores: dict) -> tuple[float, float]:
    """Expected (valence, arousal) in [0, 1] under quadrant probabilities (Q1, Q4 positive; Q1, Q2 high)."""
    return scores["Q1"] + scores["Q4"], scores["Q1"] + scores["Q2"]


def figure_valence_arousal_point(scores: dict, title: str = ""):
    """The prediction as a point on the valence-arousal plane with its four quadrants named (a matplotlib figure)."""
    from matplotlib.patches import Rectangle

    figure, axes = _figure(4.2, 4.2)
    valence, arousal = quadrant_point(scores)
    for (x, y), name in {(0.75, 0.75): "Q1", (0.25, 0.75): "Q2", (0.25, 0.25): "Q3", (0.75, 0.25): "Q4"}.items():
        shade = Rectangle((x - 0.25, y - 0.25), 0.5, 0.5, alpha=0.12 + 0.5 * scores[name], color=QUADRANT_COLORS[name], lw=0)
        axes.add_patch(shade)
        axes.text(x, y, f"{name}\n{scores[name]:.0%}", ha="center", va="center", fontsize=9)
    axes.scatter([valence], [arousal], s=120, color="black", zorder=3)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("valence (negative → positive)")
    axes.set_ylabel("arousal (low → high)")
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure


def figure_piano_roll(notes, max_seconds: float | None = 60.0, title: str = ""):
    """
    Notes as a piano roll (time x pitch, darker for louder; a matplotlib figure): at most `max_seconds` of them, from
    the start, or from the first note's second when the notes begin later than that (a long silent opening); the
    title says which part is shown when notes are left out.
    """
    from matplotlib.patches import Rectangle

    figure, axes = _figure(8.0, 3.2)
    first = min((n.onset for n in notes), default=0.0)
    start = 0.0 if max_seconds is None or first < max_seconds else float(math.floor(first))
    stop = math.inf if max_seconds is None else start + max_seconds
    shown = [n for n in notes if start <= n.onset < stop]
    for note in shown:
        width = max(note.offset - note.onset, 0.02)
        axes.add_patch(Rectangle((note.onset, note.pitch - 0.4), width, 0.8, color="#1f3b73", alpha=0.25 + 0.75 * note.velocity / 127, lw=0))
    cut = len(shown) < len(notes) or any(n.offset > stop for n in shown)
    end = max((n.offset for n in shown), default=start + 1.0)
    axes.set_xlim(start, stop if cut else end)
    axes.set_ylim(20, 109)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("MIDI pitch")
    part = f" ({len(shown)} from {start:g} to {stop:g} s shown)" if cut else ""
    axes.set_title(title or f"{len(notes)} notes{part}", fontsize=9)
    figure.tight_layout()
    return figure


def figure_timeline(timeline: list[dict]):
    """Quadrant probabilities of every analysis window over time, as stacked areas (a matplotlib figure)."""
    figure, axes = _figure(8.0, 2.8)
    centres = [(w["start"] + w["end"]) / 2 for w in timeline]
    names = ["Q1", "Q2", "Q3", "Q4"]
    series = [[next(entry["score"] for entry in w["labels"] if entry["label"] == name) for w in timeline] for name in names]
    axes.stackplot(centres, series, labels=names, colors=[QUADRANT_COLORS[n] for n in names], alpha=0.85)
    axes.set_xlim(centres[0], centres[-1])
    axes.set_ylim(0, 1)
    axes.set_xlabel("time (s, window centre)")
    axes.set_ylabel("probability")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    return figure


__all__ = [
    "figure_piano_roll",
    "figure_timeline",
    "figure_valence_arousal_point",
    "plot_confusion_matrix",
    "plot_memory_profiles",
    "plot_valence_arousal",
    "quadrant_point",
]
