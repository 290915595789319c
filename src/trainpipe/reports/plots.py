"""The figures of a model card, drawn with matplotlib's object API (no pyplot, no GUI backend, no
global state): learning curves, a confusion matrix, predicted against true values.

A leaf module: it knows numbers, not tasks or runs, so tasks draw their own figures with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainpipe.runtime.atomic import atomic_path

# curves drawn for every run, when logged; `<stage>/<metric>` names (docs/architecture.md)
LOSS_KEYS = ("train/loss", "val/loss")
MAX_CLASSES_ANNOTATED = 20  # beyond this, cell counts would not be readable


def _figure(width: float = 6.0, height: float = 4.5) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def learning_curves(history: dict[str, list[tuple[int, float]]], objective: str) -> Any | None:
    """Losses (left) and the objective metric (right) against the optimizer step; None when the
    run logged none of them."""
    losses = {k: history[k] for k in LOSS_KEYS if history.get(k)}
    metric = history.get(objective) if objective not in LOSS_KEYS else None
    if not losses and not metric:
        return None
    figure = _figure(10.0, 4.0)
    left, right = figure.subplots(1, 2) if metric else (figure.subplots(), None)
    for key, points in losses.items():
        left.plot(*_columns(points), marker="." if len(points) < 30 else None, label=key)
    left.set(xlabel="optimizer step", ylabel="loss", title="loss")
    left.legend()
    if right is not None:
        right.plot(*_columns(metric), marker="o", color="tab:green")
        right.set(xlabel="optimizer step", ylabel=objective, title=objective)
    return figure


def _columns(points: list[tuple[int, float]]) -> tuple[list[int], list[float]]:
    return [step for step, _ in points], [value for _, value in points]


def confusion_matrix(truth: Any, predicted: Any, labels: list[str]) -> Any:
    """Rows: the true class; columns: the predicted class; cells: counts on the test split."""
    import numpy as np

    count = len(labels)
    matrix = np.zeros((count, count), dtype=np.int64)
    np.add.at(matrix, (np.asarray(truth), np.asarray(predicted)), 1)
    side = min(4.0 + 0.4 * count, 14.0)
    figure = _figure(side, side * 0.85)
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    axes.set(
        xticks=range(count),
        yticks=range(count),
        xticklabels=labels,
        yticklabels=labels,
        xlabel="predicted",
        ylabel="true",
        title=f"confusion matrix (test split, {int(matrix.sum())} rows)",
    )
    if count <= MAX_CLASSES_ANNOTATED:
        threshold = matrix.max() / 2
        for (row, column), value in np.ndenumerate(matrix):
            colour = "white" if value > threshold else "black"
            axes.text(column, row, str(value), ha="center", va="center", color=colour)
    return figure


def predicted_vs_true(truth: Any, predicted: Any, target: str) -> Any:
    """A scatter of predictions against true values on the test split, with the y = x line."""
    import numpy as np

    truth, predicted = np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float)
    figure = _figure(5.5, 5.0)
    axes = figure.subplots()
    axes.scatter(truth, predicted, s=10, alpha=0.6)
    low = float(min(truth.min(), predicted.min()))
    high = float(max(truth.max(), predicted.max()))
    axes.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    axes.set(
        xlabel=f"true {target}",
        ylabel=f"predicted {target}",
        title=f"predicted vs true (test split, {len(truth)} rows)",
    )
    return figure


def save_png(figure: Any, path: Path) -> Path:
    """Write a figure as PNG atomically (a reader never sees half a file)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return path
