"""The tabular tasks' figures for the model card (`Task.figures`): a confusion matrix, predicted
against true values. matplotlib's object API, as reports/plots.py."""

from __future__ import annotations

from typing import Any

MAX_CLASSES_ANNOTATED = 20  # beyond this, cell counts would not be readable


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


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
