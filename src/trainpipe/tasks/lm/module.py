"""The LightningModule of the language-modelling task: a GPT trained on next-token prediction.

Logged: `train/loss` per step; `<stage>/loss`, `<stage>/ppl` and `<stage>/bpb` (bits per byte of
text, comparable across tokenizers) per evaluation, over every window of the split. Gradient
clipping happens here rather than in the Trainer, so it works with a fused AdamW under
bf16-mixed (Lightning refuses `gradient_clip_val` with optimizers that unscale internally).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torchmetrics import MeanMetric

from trainpipe.tasks.lm.gpt import GPT, GPTConfig

EVAL_STAGES = ("val", "test")


def gpt_config(spec: dict[str, Any]) -> GPTConfig:
    """The model's shape from a spec (what checkpoints and packages carry)."""
    return GPTConfig(**spec["gpt"])


class LanguageModule(L.LightningModule):
    def __init__(
        self,
        spec: dict[str, Any],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        grad_clip: float | None = 1.0,
        model: GPT | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        # `model`: weights to start from (`model.init_from`); else GPT-2's initialisation
        self.model = model if model is not None else GPT(gpt_config(spec))
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.grad_clip = grad_clip
        self.eval_loss = torch.nn.ModuleDict({stage: MeanMetric() for stage in EVAL_STAGES})

    # -- what the throughput monitor reads (callbacks/throughput.py) -------------------------
    @property
    def flops_per_token(self) -> float:
        return self.model.flops_per_token()

    def tokens_in_batch(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        return batch[0].numel()  # from the shape: no device sync

    # -- steps ---------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Any:
        inputs, targets = batch
        loss = self.model.loss(inputs, targets)
        self.log("train/loss", loss, on_step=True, prog_bar=True, batch_size=inputs.size(0))
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        inputs, targets = batch
        # every window has seq_len tokens, so a mean over windows is a mean over tokens
        self.eval_loss[stage].update(self.model.loss(inputs, targets), weight=inputs.size(0))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _log_eval(self, stage: str) -> None:
        loss = self.eval_loss[stage].compute()  # reduced over every rank's windows
        self.eval_loss[stage].reset()
        for name, value in eval_metrics(float(loss), self.spec["bytes_per_token"][stage]).items():
            self.log(f"{stage}/{name}", value, sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    # -- optimisation --------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        # weight decay on matrices only: biases and LayerNorm gains are left alone
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        optimizer = self.optimizer_factory(
            params=[{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        )
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # what `trainpipe eval`, `generate`, `export` and the registry need to rebuild the model
        checkpoint["trainpipe_model"] = self.spec


def eval_metrics(loss: float, bytes_per_token: float) -> dict[str, float]:
    """loss (nats/token), perplexity, and bits per byte of the underlying text."""
    return {
        "loss": loss,
        "ppl": math.exp(min(loss, 50.0)),
        "bpb": loss / math.log(2) / bytes_per_token,
    }
