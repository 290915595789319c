"""The progress bar: Lightning's Rich bar, redrawn by time and never waiting for the GPU.

Lightning's own bars do Python work after every batch and copy every `prog_bar` metric from the
device to the host to show it (`trainer.progress_bar_metrics`), which makes the CPU wait for the
GPU once per step. This bar updates its position at most every `refresh_s` seconds and shows the
metrics named in `metrics` as they were at the last log window (`trainer.log_every_n_steps`, when
the loggers read them anyway) or the last validation. Modules therefore log with
`prog_bar=False` (tasks/lm/module.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress.progress_bar import get_standard_metrics


class TimedProgressBar(RichProgressBar):
    def __init__(
        self,
        refresh_s: float = 0.5,
        metrics: Sequence[str] = ("train/loss", "val/loss"),
        leave: bool = False,
    ) -> None:
        if refresh_s <= 0:
            raise ValueError(f"refresh_s must be > 0, got {refresh_s}")
        # Rich redraws on its own thread this many times a second; we only feed it positions
        super().__init__(refresh_rate=max(1, math.ceil(1 / refresh_s)), leave=leave)
        self.refresh_s = refresh_s
        self.shown = tuple(metrics)
        self.values: dict[str, float] = {}  # what the bar shows, already on the host
        self._due = 0.0  # time.monotonic() of the next position update
        self._read_step = -1  # global step whose metrics `values` holds

    # -- what the bar shows ---------------------------------------------------------------
    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        return {**get_standard_metrics(trainer), **self.values}

    def _read(self, trainer: Any) -> None:
        """Copy the shown metrics to the host: one device sync, at a moment that has one anyway."""
        current = trainer.callback_metrics
        for name in self.shown:
            if name in current:
                self.values[name] = float(current[name])

    def _at_log_window(self, trainer: Any) -> bool:
        every, step = trainer.log_every_n_steps, trainer.global_step
        return bool(every) and step % every == 0 and step != self._read_step

    def _time_to_draw(self) -> bool:
        now = time.monotonic()
        if now < self._due:
            return False
        self._due = now + self.refresh_s
        return True

    # -- training --------------------------------------------------------------------------
    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._at_log_window(trainer):
            self._read_step = trainer.global_step
            self._read(trainer)
        last = batch_idx + 1 >= self.total_train_batches
        if self._time_to_draw() or last:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._read(trainer)
        super().on_train_epoch_end(trainer, pl_module)

    # -- evaluation ------------------------------------------------------------------------
    def on_validation_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._time_to_draw():
            super().on_validation_batch_end(
                trainer, pl_module, outputs, batch, batch_idx, dataloader_idx
            )

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self._read(trainer)  # validation metrics were just reduced on the host side
        super().on_validation_end(trainer, pl_module)

    def on_test_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._time_to_draw():
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
