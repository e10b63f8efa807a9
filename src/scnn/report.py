"""Pictures of results: one timeline per video (ground truth above detections, by class) and
precision-recall curves per class.

Figures are drawn on their own ``Figure`` objects, never through pyplot, so a caller's
matplotlib backend and open figures (a notebook's, say) stay as they were.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from scnn.fileio import atomic_write_bytes
from scnn.records import Detection, Instance


def class_colours(classes: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """A fixed colour per class, in class-list order, so every picture of a run agrees."""
    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(classes)}


def plot_timeline(
    path: str | Path,
    video: str,
    duration_s: float,
    classes: Sequence[str],
    detections: Sequence[Detection],
    ground_truth: Sequence[Instance] = (),
) -> None:
    """Write a PNG: a ground-truth row (when given) and one detection row per class.

    Detections are drawn with opacity proportional to their score, so confident detections
    stand out and the long tail of low-scoring ones fades.
    """
    colours = class_colours(classes)
    rows = [("ground truth", list(ground_truth))] if ground_truth else []
    rows += [(name, [d for d in detections if d.label == name]) for name in classes]
    figure = Figure(figsize=(12, 0.9 + 0.35 * len(rows)))
    axes = figure.subplots()
    for row, (_, segments) in enumerate(reversed(rows)):
        for segment in segments:
            alpha = getattr(segment, "score", 1.0)
            axes.broken_barh(
                [(segment.start_s, segment.end_s - segment.start_s)],
                (row + 0.1, 0.8),
                facecolors=colours.get(segment.label, "grey"),
                alpha=max(0.1, min(1.0, alpha)),
            )
    axes.set_yticks([i + 0.5 for i in range(len(rows))], [name for name, _ in reversed(rows)])
    axes.set_xlim(0, max(duration_s, 1e-6))
    axes.set_ylim(0, len(rows))
    axes.set_xlabel("time (s)")
    axes.set_title(video)
    axes.legend(
        handles=[Patch(color=colours[name], label=name) for name in classes],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize="small",
    )
    write_png(figure, path)


def plot_precision_recall(
    path: str | Path,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    classes: Sequence[str],
    title: str,
) -> None:
    """Write a PNG with one precision-recall curve per class (``curves[name] = (recall,
    precision)``, each point one more detection in descending score order)."""
    colours = class_colours(classes)
    figure = Figure(figsize=(6, 4.5))
    axes = figure.subplots()
    for name in classes:
        if name in curves and len(curves[name][0]):
            recall, precision = curves[name]
            axes.plot(recall, precision, color=colours[name], label=name, drawstyle="steps-post")
    axes.set_xlim(0, 1.0)
    axes.set_ylim(0, 1.05)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title(title, fontsize="medium")
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="lower left", fontsize="small")
    write_png(figure, path)


def write_png(figure: Figure, path: str | Path) -> None:
    """Lay out ``figure`` and write it as a 100-dpi PNG, atomically."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())
