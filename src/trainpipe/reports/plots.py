"""The figures every model card has, drawn with matplotlib's object API (no pyplot, no GUI
backend, no global state): learning curves. A task draws its own figures (`Task.figures`, e.g.
tasks/tabular/plots.py); `save_png` writes any of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainpipe.runtime.atomic import atomic_path

# curves drawn for every run, when logged; `<stage>/<metric>` names (docs/architecture.md)
LOSS_KEYS = ("train/loss", "val/loss")


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


def save_png(figure: Any, path: Path) -> Path:
    """Write a figure as PNG atomically (a reader never sees half a file)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return path
