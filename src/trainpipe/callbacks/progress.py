"""Progress: Lightning's Rich bar on a terminal, periodic lines in a log file or a pipe.

`progress_display` (configs/callbacks/default.yaml) picks one: a bar redrawn in place is a
terminal's thing; written to a file or a pipe it leaves a trail of frames (`Epoch 15/19 ━━━…`),
so there the job prints a line every `line_every_s` seconds instead — step, metrics, time per
step and the ETA to the end of the run (max_steps, or max_epochs × steps per epoch).

The bar is redrawn by time and never waits for the GPU.

Lightning's own bars do Python work after every batch and copy every `prog_bar` metric from the
device to the host to show it (`trainer.progress_bar_metrics`), which makes the CPU wait for the
GPU once per step. This bar updates its position at most every `refresh_s` seconds and shows the
metrics named in `metrics` as they were at the last log window (`trainer.log_every_n_steps`, when
the loggers read them anyway) or the last validation. Modules therefore log with
`prog_bar=False` (tasks/lm/module.py).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from lightning.pytorch.callbacks.progress.progress_bar import get_standard_metrics

log = logging.getLogger(__name__)


def progress_display(
    refresh_s: float = 0.5,
    metrics: Sequence[str] = ("train/loss", "val/loss"),
    line_every_s: float = 30.0,
) -> ProgressBar:
    """The bar when standard output is a terminal, else progress lines."""
    if sys.stdout.isatty():
        return TimedProgressBar(refresh_s=refresh_s, metrics=metrics)
    return ProgressLines(every_s=line_every_s, metrics=metrics)


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


class ProgressLines(ProgressBar):
    """A line every `every_s` seconds of training (and after the first step and the last):
    `step 120/450 (27%)  train/loss 2.31  val/loss 2.40  0.56 s/step  ETA 3m05s`.

    A ProgressBar, so Lightning adds no bar of its own. The metrics shown are those of the last
    log window, copied when Lightning has just read them for its loggers: a line falling between
    two windows reads nothing from the device, so no step waits for the GPU.
    """

    def __init__(self, every_s: float = 30.0, metrics: Sequence[str] = ("train/loss",)) -> None:
        super().__init__()
        if every_s < 0:
            raise ValueError(f"every_s must be >= 0, got {every_s}")
        self.every_s = every_s
        self.shown = tuple(metrics)
        self._enabled = True
        self._start: tuple[float, int] | None = None  # (time, global step) of the fit's start
        self._due = 0.0
        self._metrics: dict[str, float] = {}  # `metrics` as of the last log window

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._start = (time.monotonic(), trainer.global_step)
        self._due = 0.0  # the first step gets a line: the job is under way

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not (self._enabled and trainer.is_global_zero):
            return
        every = trainer.log_every_n_steps
        if every and trainer.global_step % every == 0:  # a log window: Lightning read them now
            self._metrics = self._read(trainer)
        now = time.monotonic()
        if now >= self._due:
            self._due = now + self.every_s
            log.info(self.line(trainer, now))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self._enabled and trainer.is_global_zero and self._start is not None:
            self._metrics = self._read(trainer)  # training is over: nothing waits for this read
            log.info(self.line(trainer, time.monotonic(), ended=True))

    def _read(self, trainer: Any) -> dict[str, float]:
        current = trainer.callback_metrics
        return {name: float(current[name]) for name in self.shown if name in current}

    def line(self, trainer: Any, now: float, ended: bool = False) -> str:
        step, total = trainer.global_step, trainer.estimated_stepping_batches
        parts = [f"step {step}/{total} ({100 * step / total:.0f}%)" if total else f"step {step}"]
        if not ended:  # once the loop is over, current_epoch already counts the next one
            parts.append(f"epoch {trainer.current_epoch}")
        parts += [f"{name} {value:.4g}" for name, value in self._metrics.items()]
        started, first = self._start or (now, step)
        done = step - first
        if done > 0:
            per_step = (now - started) / done
            parts.append(f"{per_step:.3g} s/step")
            if ended:
                parts.append(f"trained in {duration(now - started)}")
            elif total and math.isfinite(total) and total > step:
                parts.append(f"ETA {duration(per_step * (total - step))}")
        return "  ".join(parts)


def duration(seconds: float) -> str:
    """3m05s, 1h02m, 42s."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
