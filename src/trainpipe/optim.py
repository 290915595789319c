"""Optimizers and schedules around what configs build: the fused-AdamW default, the gradient
clipping every task's module does (`clip_gradients`), and learning-rate schedules configs point at
(`_target_` + `_partial_: true`; the module passes the optimizer in)."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import torch


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int = 100,
    min_lr_ratio: float = 0.1,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to the optimizer's lr over `warmup_steps`, then a cosine decay to
    `min_lr_ratio` × lr at `total_steps`, flat after that. Stepped once per optimizer step."""
    warmup_steps = max(0, min(warmup_steps, total_steps))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def with_fused_default(
    factory: Callable[..., torch.optim.Optimizer], device: torch.device
) -> Callable[..., torch.optim.Optimizer]:
    """The optimizer factory with `fused=True` on CUDA when the config leaves `fused` unset
    (null): torch's fused Adam/AdamW is one kernel per step instead of a few per tensor."""
    target = getattr(factory, "func", factory)
    keywords = getattr(factory, "keywords", {}) or {}
    try:
        takes_fused = "fused" in inspect.signature(target).parameters
    except (TypeError, ValueError):
        takes_fused = False
    unset = keywords.get("fused") is None and not keywords.get("foreach")
    if device.type != "cuda" or not takes_fused or not unset:
        return factory
    return functools.partial(factory, fused=True)


def clip_gradients(
    module: Any, optimizer: Any, max_value: float | None, algorithm: str | None = "norm"
) -> None:
    """Clip `module`'s gradients before the optimizer step: every task's
    `configure_gradient_clipping` calls this, so clipping behaves the same whatever the precision,
    the optimizer (fused or not) and the strategy:

    - under `16-mixed` the gradients are loss-scaled; Lightning unscales them before clipping
      except for optimizers that unscale inside their step (fused AdamW, the CUDA default), whose
      gradients would be clipped while still ×65536. They are unscaled here instead, and the
      GradScaler then tells the fused step not to unscale again.
    - under FSDP1 (`trainer=fsdp`) each rank holds a shard of every gradient: FSDP's own
      `clip_grad_norm_` takes the norm over all ranks, so every rank scales by the same factor.
      (FSDP2's DTensor gradients are reduced by `torch.nn.utils.clip_grad_norm_` itself.)
    - Lightning's own clipping refuses fused optimizers under mixed precision; this does not.

    `algorithm` is Lightning's `gradient_clip_algorithm`: "norm" (the default) or "value".
    Nothing is read back to the host: the norm stays on the device.
    """
    if not max_value:
        return
    trainer = getattr(module, "_trainer", None)
    raw = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer wraps the real one
    scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
    if scaler is not None and getattr(raw, "_step_supports_amp_scaling", False):
        scaler.unscale_(raw)
    if str(algorithm or "norm") == "value":
        torch.nn.utils.clip_grad_value_(module.parameters(), max_value)
        return
    root = getattr(getattr(trainer, "strategy", None), "model", None)
    if _is_fsdp1(root):
        root.clip_grad_norm_(max_value)
    else:
        torch.nn.utils.clip_grad_norm_(module.parameters(), max_value)


def _is_fsdp1(model: Any) -> bool:
    if model is None or not torch.distributed.is_available():
        return False
    from torch.distributed.fsdp import FullyShardedDataParallel

    return isinstance(model, FullyShardedDataParallel)
