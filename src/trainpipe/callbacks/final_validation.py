"""Every fit ends with a validation of its final weights.

Lightning validates every `val_check_interval` batches or at epoch ends; a run whose
`trainer.max_steps` falls between two of those points (or whose last epoch ends off the interval)
would stop with its last steps never validated — and, when no validation happened at all,
callbacks that monitor `val/*` have nothing to read. Asking the trainer to stop after the last
step makes Lightning run one more validation before it stops (training_epoch_loop: a stop request
is a validation point), unless this step is one already.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback


class FinalValidation(Callback):
    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.should_stop or not is_last_batch_of_fit(trainer, batch_idx):
            return
        trainer.should_stop = True  # the same decision on every rank: it depends on counters only


def is_last_batch_of_fit(trainer: Any, batch_idx: int) -> bool:
    """Whether this batch ends the fit: max_steps reached, or the last batch of the last epoch."""
    if trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps:
        return True
    last_epoch = (
        trainer.max_epochs not in (None, -1) and trainer.current_epoch + 1 >= trainer.max_epochs
    )
    return last_epoch and batch_idx + 1 >= trainer.num_training_batches
