"""Checkpoints a killed job resumes from: every `every_n_steps` optimizer steps and at each epoch end.

Checkpoints are `checkpoints/step-<global step>.ckpt`, a file or under trainer=fsdp2 a directory
of shards (published atomically either way, runtime/checkpoint_io.py); the newest `keep_last` are
kept (the best-by-metric checkpoint is ModelCheckpoint's business). Each
file also carries every rank's RNG states, restored right before the first resumed batch, and —
through the data loader's own state — the position inside the epoch. Before each save the
tracker journals the metrics of the steps the checkpoint covers, so a resumed job logs each
metric point once, at the step it logged it at uninterrupted (Lightning's logging step is
restored too).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from trainpipe.runtime import faults, rng
from trainpipe.runtime.checkpoint_io import (
    remove_checkpoint,
    remove_stale_staging,
    step_checkpoint_name,
    step_checkpoints,
)
from trainpipe.runtime.ranks import global_rank

# called with (trainer, step) right before a checkpoint of `step` is written
BeforeSave = Callable[[Any, int], None]


class ResumeCheckpoint(Callback):
    def __init__(
        self,
        every_n_steps: int = 50,
        keep_last: int = 3,
        dirpath: str | None = None,
        before_save: list[BeforeSave] | None = None,
    ) -> None:
        self.every_n_steps = every_n_steps
        self.keep_last = keep_last
        self.dirpath = Path(dirpath) if dirpath else None
        # the runner hooks the weight check and the tracking commit in here
        self.before_save: list[BeforeSave] = list(before_save or [])
        self._rng_to_restore: Any = None
        self._restored = False  # a checkpoint was loaded and training has not started again
        self._last_saved_step = -1
        self._in_flight = False
        self._saving = False  # this callback's save, not ModelCheckpoint's
        # Lightning's logging step a checkpoint of this callback recorded (see _restore_logging_step)
        self._logging_step_to_restore: int | None = None

    # -- when to save -------------------------------------------------------------------------
    # Step S is saved when step S+1 is about to start, not in on_train_batch_end: Lightning hands
    # step S's metrics to the logger only after on_train_batch_end, and a checkpoint must not
    # cover steps whose metrics are not journaled yet.
    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if self._restored:  # the first batch after loading a checkpoint of this very step
            self._restored = False
            self._last_saved_step = step  # on every rank alike: saving is a collective
            # as late as possible: overrides whatever restoring drew
            if self._rng_to_restore is not None:
                rng.restore(self._rng_to_restore)
                self._rng_to_restore = None
            self._restore_logging_step(trainer)
        if self.every_n_steps and step and step % self.every_n_steps == 0:
            self.save(trainer, batch_in_flight=True)
        if faults.armed("kill", step) and batch_idx > 0:
            faults.die()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if faults.armed("kill_before_checkpoint", trainer.global_step):
            faults.die()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if faults.armed("kill_at_epoch_end", trainer.current_epoch):
            faults.die()
        self.save(trainer)
        if faults.armed("kill", trainer.global_step):
            faults.die()

    def save(self, trainer: Any, batch_in_flight: bool = False) -> Path | None:
        """Write `step-<global step>.ckpt` (all ranks take part) and prune old ones.

        `batch_in_flight`: called between fetching a batch and training on it, so the loader's
        position is one batch ahead of what the weights have seen.
        """
        step = trainer.global_step
        if step == self._last_saved_step and batch_in_flight:
            return None
        for hook in self.before_save:
            hook(trainer, step)
        path = self.dirpath / step_checkpoint_name(step)
        sampler = getattr(trainer.train_dataloader, "batch_sampler", None)
        self._in_flight = batch_in_flight
        self._saving = True
        if batch_in_flight and hasattr(sampler, "in_flight"):
            sampler.in_flight = 1
        try:
            trainer.save_checkpoint(path, weights_only=False)  # the whole state: it resumes
        finally:
            self._in_flight = self._saving = False
            if hasattr(sampler, "in_flight"):
                sampler.in_flight = 0
        self._last_saved_step = step
        if trainer.is_global_zero:
            for _, old in step_checkpoints(self.dirpath)[self.keep_last :]:
                remove_checkpoint(old)
            remove_stale_staging(self.dirpath)
        return path

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if self._saving:
            logging_step = trainer.fit_loop.epoch_loop._batches_that_stepped
            checkpoint["callbacks"][self.state_key]["logging_step"] = logging_step
        if not self._in_flight:
            return
        # Lightning counted the fetched batch as "ready" before on_train_batch_start; undo that so
        # the checkpoint reads "S steps done, nothing in flight" and Lightning's restart logic
        # (RESTARTED_ON_LAST: no extra step count, no skipped or repeated batch) resumes at S+1.
        progress = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]
        progress["total"]["ready"] -= 1
        progress["current"]["ready"] -= 1
        progress["is_last_batch"] = False

    # Lightning labels logged metrics with `_batches_that_stepped` and, restarting, assumes the
    # checkpoint was written before that counter moved past the last step (as ModelCheckpoint's
    # on_validation_end saves are): resumed at a step where validation ran, it spends one empty
    # loop iteration skipping the repeated validation and counts it (training_epoch_loop.advance,
    # Lightning 2.6). Our checkpoints are written after the counter moved, so every later
    # train/loss and val/* point landed one step late and the log_every_n_steps windows moved by
    # one, weights unchanged. The counter this callback saved is put back before the first
    # resumed step is logged.
    def _restore_logging_step(self, trainer: Any) -> None:
        if self._logging_step_to_restore is not None:
            trainer.fit_loop.epoch_loop._batches_that_stepped = self._logging_step_to_restore
            self._logging_step_to_restore = None

    # -- what a checkpoint carries beyond Lightning's own state ---------------------------------
    def state_dict(self) -> dict[str, Any]:
        states = [rng.capture()]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            states = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(states, rng.capture())
        return {"rng_per_rank": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        states = state_dict.get("rng_per_rank") or []
        rank = global_rank()
        # saved by fewer processes (a resume at a larger world size): this rank keeps its seed
        self._rng_to_restore = states[rank] if rank < len(states) else None
        self._logging_step_to_restore = state_dict.get("logging_step")
        self._restored = True
