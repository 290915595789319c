"""Optimizers and schedules around what configs build: the fused-AdamW default, and learning-rate
schedules configs point at (`_target_` + `_partial_: true`; the module passes the optimizer in)."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable

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
