"""The image task's own figure for the model card: a grid of misclassified test pictures, each
titled with its true and predicted class (the confusion matrix is the tabular tasks')."""

from __future__ import annotations

from typing import Any

GRID_COLUMNS = 6
MAX_SHOWN = 24


def misclassified_grid(prepared: Any, truth: Any, predicted: Any, classes: list[str]) -> Any:
    import numpy as np
    from matplotlib.figure import Figure

    truth, predicted = np.asarray(truth), np.asarray(predicted)
    wrong = np.flatnonzero(truth != predicted)[:MAX_SHOWN]
    rows = max(1, -(-len(wrong) // GRID_COLUMNS))
    figure = Figure(figsize=(1.6 * GRID_COLUMNS, 1.8 * rows + 0.4), layout="constrained")
    total = int((truth != predicted).sum())
    figure.suptitle(f"misclassified test images ({total} of {len(truth)}; true → predicted)")
    axes = figure.subplots(rows, GRID_COLUMNS, squeeze=False)
    size = prepared.image_size
    test = prepared.splits["test"].with_format("numpy")
    for slot, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if slot >= len(wrong):
            continue
        row = int(wrong[slot])
        pixels = np.asarray(test[row]["features"], dtype=np.uint8).reshape(size, size, 3)
        ax.imshow(pixels, interpolation="nearest")
        ax.set_title(f"{classes[truth[row]]} → {classes[predicted[row]]}", fontsize=8)
    if not len(wrong):
        axes.flat[0].text(0.5, 0.5, "none", ha="center", va="center")
    return figure
