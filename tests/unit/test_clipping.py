"""Gradient clipping, done in the module by every task (optim.py `clip_gradients`), under the
precision plugins a GPU uses, exercised on the CPU with Lightning's real AMP plugin and torch's
fused optimizers (which have CPU kernels): fp16's loss-scaled gradients are unscaled before they
are clipped, and a tabular model clips with the fused AdamW that Lightning's own clipping refuses.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from torch.utils.data import DataLoader

from tests.unit.test_lm_training import cpu_trainer
from trainpipe.tasks.classification.head import ClassificationHead
from trainpipe.tasks.lm.module import LanguageModule
from trainpipe.tasks.tabular.module import TabularModule

GPT = {"vocab_size": 64, "seq_len": 8, "n_layer": 1, "n_head": 2, "d_model": 16}
LR, CLIP = 1.0, 1e-3  # the clip is far below the true norm: every step is clipped to it


def tokens(batches: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(
        0, GPT["vocab_size"], (batches, 4, GPT["seq_len"] + 1), generator=generator
    )
    return [(r[:, :-1], r[:, 1:]) for r in rows]


def fit_one_step(
    module: Any, batches: list[Any], tmp_path: Path, plugin: Any, **trainer: Any
) -> None:
    run = cpu_trainer(tmp_path, max_steps=1, plugins=[plugin], **trainer)
    run.fit(module, DataLoader(batches, batch_size=None))  # each item is a whole batch


def weights(module: Any) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}  # tied ones once


def step_norm(before: dict[str, torch.Tensor], module: Any) -> float:
    """The norm of the change a one-step SGD (lr 1, no momentum) made: the clipped gradient's."""
    after = weights(module)
    return float(torch.cat([(after[k] - v).flatten() for k, v in before.items()]).norm())


def test_fp16_loss_scaled_gradients_are_unscaled_before_a_fused_optimizer_clips_them(
    tmp_path: Path,
) -> None:
    """16-mixed with a GradScaler and a fused optimizer (the CUDA default): Lightning leaves the
    gradients ×scale for the fused step to unscale, so clipping them as they were would apply
    CLIP / scale. The step taken must be the true gradient clipped to CLIP."""
    sgd = functools.partial(torch.optim.SGD, lr=LR, fused=True)  # linear in the gradient
    module = LanguageModule({"gpt": GPT}, sgd, grad_clip=CLIP)
    before = weights(module)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    fit_one_step(module, tokens(), tmp_path, MixedPrecision("16-mixed", "cpu", scaler))
    assert scaler.get_scale() == 2.0**16  # the step was taken (no inf), not skipped
    assert step_norm(before, module) == pytest.approx(LR * CLIP, rel=1e-3)


def tabular(optimizer: Any) -> TabularModule:
    spec = {
        "kind": "classification",
        "input_shape": [6],
        "num_outputs": 3,
        "feature_mean": [0.0] * 6,
        "feature_std": [1.0] * 6,
        "net": {"_target_": "trainpipe.tasks.tabular.nets.MLP", "hidden_sizes": [8]},
    }
    return TabularModule(spec, ClassificationHead(), optimizer)


def test_a_tabular_model_clips_with_a_fused_optimizer_under_mixed_precision(tmp_path: Path) -> None:
    """`trainer.gradient_clip_val` with the fused AdamW a GPU gets by default: Lightning's own
    clipping refuses it under mixed precision ("does not allow for gradient clipping"); the
    module clips instead, to the configured norm."""
    generator = torch.Generator().manual_seed(0)
    rows = [(torch.randn(16, 6, generator=generator), torch.arange(16) % 3) for _ in range(2)]
    module = tabular(functools.partial(torch.optim.SGD, lr=LR, fused=True))
    before = weights(module)
    plugin = MixedPrecision("bf16-mixed", "cpu")
    fit_one_step(module, rows, tmp_path, plugin, gradient_clip_val=CLIP)
    assert step_norm(before, module) == pytest.approx(LR * CLIP, rel=1e-3)
