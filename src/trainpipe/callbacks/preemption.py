"""Preemption: SIGTERM / SIGUSR1 (SLURM's warning) → finish the step, checkpoint, stop cleanly.

The signal handler only sets a flag. Before each step the ranks agree (all-reduce MAX of the
flag) so every rank stops after the same step; then the resume checkpoint is written and
`Preempted` is raised for the runner, which flushes tracking, optionally requeues the SLURM job,
and exits with EXIT_PREEMPTED.
"""

from __future__ import annotations

import signal
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

# "temporary failure, try again" (sysexits EX_TEMPFAIL): rerun the same command to resume
EXIT_PREEMPTED = 75


class Preempted(Exception):
    """The job was asked to stop and saved a checkpoint at `step`."""

    def __init__(self, signal_name: str, step: int) -> None:
        super().__init__(f"{signal_name} received; stopped after step {step} with a checkpoint")
        self.signal_name = signal_name
        self.step = step


class PreemptionHandler(Callback):
    def __init__(self, save: Any, signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1")) -> None:
        self.save = save  # ResumeCheckpoint.save
        self.signals = signals
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # installed after Lightning's own handlers, which it sets up when fit starts
        for name in self.signals:
            number = getattr(signal, name)
            self._previous[number] = signal.signal(number, self._on_signal)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.restore_handlers()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.restore_handlers()

    def restore_handlers(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        # checked before a step rather than after one: by now the last step's metrics are logged
        stop = torch.tensor([1 if self.received else 0], device=pl_module.device)
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce(stop, reduce_op="max")
        if int(stop.item()):
            self.save(trainer, batch_in_flight=True)
            raise Preempted(self.received or "a peer rank's signal", trainer.global_step)
