"""Preemption: a stop signal during training → finish the step, checkpoint, stop cleanly.

The job's `StopSignals` (runtime/signals.py) records SIGTERM / SIGUSR1 (SLURM's warning) /
SIGINT. While training runs, this callback keeps them deferred; before each step the ranks agree
(all-reduce MAX of the flag) so every rank stops after the same step, the resume checkpoint is
written and `Preempted` is raised. The job's failure policy turns that into a KILLED run and
exit code 75 (130 for SIGINT); rerunning the same command resumes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from trainpipe.runtime.failures import Preempted
from trainpipe.runtime.signals import StopSignals


class PreemptionHandler(Callback):
    def __init__(self, save: Callable[..., Any], signals: StopSignals) -> None:
        self.save = save  # ResumeCheckpoint.save
        self.signals = signals

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # Lightning installs its own SIGTERM handler when fit starts: route the signals here again
        self.signals.install()
        self.signals.deferred = True

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        # checked before a step rather than after one: by now the last step's metrics are logged
        stop = bool(self.signals.received)  # one process: no device round trip, no GPU sync
        if trainer.world_size > 1:  # every rank stops after the same step: agree on the flag
            flag = torch.full((1,), int(stop), device=pl_module.device)  # no host→device copy
            stop = bool(trainer.strategy.reduce(flag, reduce_op="max").item())
        if stop:
            self.save(trainer, batch_in_flight=True)
            raise Preempted(self.signals.received or "a peer rank's signal", trainer.global_step)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.signals.deferred = False
        if self.signals.received:  # arrived during the last validation: the fit is saved, stop
            self.save(trainer)
            raise Preempted(self.signals.received, trainer.global_step)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.signals.deferred = False
