"""Stop a job whose loss or gradients stop being finite, before a checkpoint can hold bad weights.

A non-finite loss (seen before backward) or gradient (seen before the optimizer step when
`check_gradients`) skips that batch — its gradients are dropped, so the optimizer leaves every
weight and moment as it was — up to `max_skipped_batches` times, or stops the job with
`DivergenceError` naming the step and the value. Deciding at once needs the loss on the host every
step: free on the CPU, a GPU sync on an accelerator. So on an accelerator with 0 skips (the
default) the losses' finiteness is accumulated on the device instead and read at every log
window (`trainer.log_every_n_steps`) and before every checkpoint: the step never waits for the
host, and the job stops at that point, naming the span of steps. Whatever slips through (an overflowing gradient with a finite loss) is caught by
`check_weights`, which runs before every checkpoint, so a checkpoint never holds non-finite
weights and the newest one is the last good state.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from trainpipe.errors import JobFailed
from trainpipe.runtime import faults


class DivergenceError(JobFailed):
    """Training produced a NaN/inf loss or gradient."""


class DivergenceGuard(Callback):
    def __init__(self, max_skipped_batches: int = 0, check_gradients: bool = False) -> None:
        self.max_skipped_batches = max_skipped_batches
        self.check_gradients = check_gradients
        self.skipped = 0
        self._bad: str | None = None
        self._finite: torch.Tensor | None = None  # every loss since `_since` finite (on device)
        self._since = 1

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        self._bad = None
        if faults.armed("nan", trainer.global_step + 1):
            batch[0].fill_(float("nan"))

    def on_before_backward(self, trainer: Any, pl_module: Any, loss: torch.Tensor) -> None:
        finite = torch.isfinite(loss.detach()).all()
        # a skip is decided before the optimizer step, so it must read the flag now; on the CPU
        # reading one scalar costs nothing, so the stop names the exact step there too
        if self.max_skipped_batches or loss.device.type == "cpu":
            if not finite:
                self._bad = f"train/loss={loss.detach().float().item()}"
            return
        self._finite = finite if self._finite is None else self._finite & finite

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        every = trainer.log_every_n_steps
        if every and trainer.global_step % every == 0:
            self._check_losses(trainer.global_step)

    def _check_losses(self, step: int) -> None:
        """Read the accumulated finiteness flag (one device sync) and stop if a loss was bad."""
        if self._finite is None:
            return
        finite, first = bool(self._finite), self._since
        self._finite, self._since = None, step + 1
        if not finite:
            raise DivergenceError(
                f"non-finite train/loss in steps {first}-{step}; the last good checkpoint is kept"
            )

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self._bad is None and self.check_gradients:
            total = _norm([p.grad for p in pl_module.parameters() if p.grad is not None])
            if not math.isfinite(total):
                self._bad = f"gradient norm={total}"
        if self._bad is None:
            return
        step = trainer.global_step + 1  # the optimizer step this batch was about to take
        if self.skipped < self.max_skipped_batches:
            self.skipped += 1
            optimizer.zero_grad(set_to_none=True)  # params without grads are left untouched
            pl_module.print(
                f"divergence: skipped the batch of step {step} ({self._bad}); {self.skipped}/{self.max_skipped_batches} skips used"
            )
            return
        raise DivergenceError(
            f"non-finite {self._bad} at step {step}; the last good checkpoint is kept"
        )

    def check_weights(self, pl_module: Any, step: int) -> None:
        """Before a checkpoint of `step`: refuse to save weights that are no longer finite."""
        self._check_losses(step)
        total = _norm([p for p in pl_module.parameters()])
        if not math.isfinite(total):
            raise DivergenceError(
                f"non-finite weights after step {step} (weight norm={total}); the last good checkpoint is kept"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = state_dict.get("skipped", 0)


def _norm(tensors: list[torch.Tensor]) -> float:
    return (
        torch.stack([t.detach().float().norm() for t in tensors]).norm().item() if tensors else 0.0
    )
