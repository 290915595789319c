"""What a fit produced: the best checkpoint, its validation metrics, the objective, and the
test metrics of those weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FitResult:
    """What the fit produced: the best checkpoint, its validation metrics and the objective."""

    objective: float | None
    best_path: str | None
    best_metrics: dict[str, float]  # val/* of the best checkpoint (or of the last epoch), + epoch
    test_metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, trainer: Any, metric: str) -> FitResult:
        last = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        best = trainer.checkpoint_callback
        if best is None or not best.best_model_path:
            return cls(last.get(metric), None, last)
        metrics = getattr(best, "best_metrics", None) or last
        objective = float(best.best_model_score) if best.monitor == metric else metrics.get(metric)
        return cls(objective, best.best_model_path, metrics)

    def test(self, trainer: Any, module: Any, datamodule: Any) -> None:
        """Score the best checkpoint (its weights stay loaded in `module`) on the test split."""
        results = trainer.test(
            module,
            datamodule=datamodule,
            ckpt_path=self.best_path,
            verbose=False,
            weights_only=True,
        )
        self.test_metrics = {k: float(v) for k, v in results[0].items()}
