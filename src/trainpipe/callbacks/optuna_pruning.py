"""Report the optimized metric to the job's Optuna trial after each validation; stop bad trials early."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback


class OptunaPruning(Callback):
    """Raises `optuna.TrialPruned` when the sweep's pruner says this trial is not worth finishing.

    `trial` is the job's `TrialHandle` (hydra_plugins/trainpipe_optuna_sweeper/trial.py)."""

    def __init__(self, trial: Any, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        self.trial.report(value, step=trainer.current_epoch)
        if self.trial.should_prune():
            self.trial.prune(
                f"pruned after epoch {trainer.current_epoch}: {self.monitor}={value:.4g}"
            )
