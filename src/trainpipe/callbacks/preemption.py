"""Preemption: a stop signal during training → finish the step, checkpoint, stop cleanly.

The job's `StopSignals` (runtime/signals.py) records SIGTERM / SIGUSR1 (SLURM's warning) /
SIGINT. While training runs, this callback keeps them deferred and, before each step, decides
whether to stop; every rank stops after the same step, the resume checkpoint is written and
`Preempted` is raised. The job's failure policy turns that into a KILLED run and exit code 75
(130 for SIGINT); rerunning the same command resumes.

With several processes the ranks vote without touching the GPU: the flags are all-reduced (MAX)
over a host-side gloo group, started asynchronously before one step and read before the next,
by when it has long finished. So the GPU never waits for a stop check, the CPU thread does not
block on the network, and a signal stops every rank one step later than it would on its own.
Lightning's own per-step SIGTERM broadcast (a device tensor read back every step) is switched
off: trainpipe routes SIGTERM to `StopSignals`, so Lightning's flag could never be set anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback

from trainpipe.runtime.failures import Preempted
from trainpipe.runtime.signals import StopSignals


class PreemptionHandler(Callback):
    def __init__(self, save: Callable[..., Any], signals: StopSignals) -> None:
        self.save = save  # ResumeCheckpoint.save
        self.signals = signals
        self._group: Any = None  # the gloo group the ranks vote over (world size > 1)
        self._vote: tuple[Any, torch.Tensor] | None = None  # (pending all-reduce, its flag)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # Lightning installs its own SIGTERM handler when fit starts: route the signals here again
        self.signals.install()
        self.signals.deferred = True
        self._vote = None
        if trainer.world_size > 1:
            if self._group is None:  # every rank calls this together, as new_group requires
                self._group = dist.new_group(backend="gloo")
            skip_lightning_sigterm_broadcast(trainer)

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        # checked before a step rather than after one: by now the last step's metrics are logged
        if self._group is None:
            stop = bool(self.signals.received)  # one process: nothing to agree on
        else:
            stop = self._collect_vote()
            if not stop:
                self._start_vote()
        if stop:
            self.save(trainer, batch_in_flight=True)
            raise Preempted(self.signals.received or "a peer rank's signal", trainer.global_step)

    def _start_vote(self) -> None:
        flag = torch.tensor([int(bool(self.signals.received))], dtype=torch.int32)  # host memory
        work = dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group, async_op=True)
        self._vote = (work, flag)

    def _collect_vote(self) -> bool:
        """The result of the vote every rank started before the previous step (the same on all)."""
        if self._vote is None:
            return False
        work, flag = self._vote
        self._vote = None
        work.wait()
        # a host tensor read as numpy: no device, and no aten call a sync counter would see
        return bool(flag.numpy()[0])

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.signals.deferred = False
        # every rank started this vote before the last step: finish it, so no collective is left
        # pending on the group; a signal since then is seen below on the rank that got it
        peer_stop = self._collect_vote()
        if self.signals.received or peer_stop:  # arrived during the last step or validation
            self.save(trainer)
            raise Preempted(self.signals.received or "a peer rank's signal", trainer.global_step)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.signals.deferred = False
        self._vote = None  # the other ranks may never get here: do not wait for them


def skip_lightning_sigterm_broadcast(trainer: Any) -> None:
    """Turn off Lightning 2.6's per-step SIGTERM broadcast (training_epoch_loop.py: a device
    tensor broadcast from rank 0 and read with `.item()` before every batch, a GPU sync per step).
    Its flag is set only by Lightning's SIGTERM handler, which `StopSignals` replaces."""
    loop = trainer.fit_loop.epoch_loop
    if not hasattr(loop, "_broadcast_sigterm_tensor"):
        return  # another Lightning version: the sync counting test says whether it still syncs
    loop._broadcast_sigterm_tensor = lambda: None
