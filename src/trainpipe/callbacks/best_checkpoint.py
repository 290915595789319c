"""The best checkpoint by `optimized_metric`, with ties broken and the winner's metrics kept.

Lightning's ModelCheckpoint keeps the earliest of equal scores. On small data, accuracy ties are
common (every epoch from the second on may score 1.0 on 20 validation rows) and the earliest is
then the least trained. Here a tie goes to the checkpoint with the lower `tie_breaker` (val/loss).
The validation metrics and epoch of the best checkpoint are kept (and saved with the callback's
state), so the job's summary reports the checkpoint it registers, not the last epoch.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint


class BestCheckpoint(ModelCheckpoint):
    def __init__(self, tie_breaker: str | None = "val/loss", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tie_breaker = tie_breaker
        self.best_metrics: dict[str, float] = {}  # val/* of the best checkpoint, and its epoch

    def check_monitor_top_k(self, trainer: Any, current: torch.Tensor | None = None) -> bool:
        if super().check_monitor_top_k(trainer, current):
            return True
        if current is None or self.save_top_k != 1 or not self.best_k_models:
            return False
        best = self.best_k_models[self.kth_best_model_path]
        now = trainer.callback_metrics.get(self.tie_breaker) if self.tie_breaker else None
        before = self.best_metrics.get(self.tie_breaker or "")
        better = bool(
            torch.eq(current, best)
            and now is not None
            and before is not None
            and float(now) < before
        )
        # every rank must take the same decision (as ModelCheckpoint does for its own)
        return trainer.strategy.reduce_boolean_decision(better)

    def _update_best_and_save(
        self, current: torch.Tensor, trainer: Any, monitor_candidates: dict[str, torch.Tensor]
    ) -> None:
        super()._update_best_and_save(current, trainer, monitor_candidates)
        if (
            self.best_model_path in self.best_k_models
            and self.best_k_models[self.best_model_path] is current
        ):
            self.best_metrics = {
                k: float(v) for k, v in monitor_candidates.items() if k.startswith("val/")
            }
            self.best_metrics["epoch"] = int(monitor_candidates["epoch"])

    def _ModelCheckpoint__warn_if_dir_not_empty(self, dirpath: Any) -> None:
        # ModelCheckpoint's "Checkpoint directory … exists and is not empty": the directory is
        # shared with the step checkpoints by design, and a resumed job finds its own files there
        return

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_metrics": self.best_metrics}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.best_metrics = dict(state_dict.get("best_metrics", {}))
