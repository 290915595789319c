"""The LightningModule of the tabular tasks: a `FeatureModel` trained with its task's head.

A head (classification or regression) says what the loss is and which metrics are reported; the
module logs `train/loss` per step and `<stage>/loss` + `<stage>/<metric>` per evaluation. It is
built from the full spec (data spec + net), so it is complete at construction: nothing about the
data is patched in later.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

import lightning as L
import torch
from torchmetrics import Metric

from trainpipe.optim import clip_gradients, with_fused_default
from trainpipe.tasks.tabular.model import FeatureModel

EVAL_STAGES = ("val", "test")
# per-class metrics are logged for at most this many classes (three metrics each)
MAX_CLASSES_LOGGED = 50
UNSAFE_METRIC_CHARS = re.compile(r"[^\w.\- ]")


def class_metric_objects(head: Any, spec: dict[str, Any]) -> dict[str, Metric]:
    """The head's per-class metrics (classification), or none (regression, too many classes)."""
    make = getattr(head, "class_metrics", None)
    if make is None or spec["num_outputs"] > MAX_CLASSES_LOGGED:
        return {}
    return make(spec)


def per_class(spec: dict[str, Any], metrics: dict[str, Metric], prefix: str) -> dict[str, float]:
    """`test/f1.<class>`, `test/precision.<class>`, … from computed per-class metrics."""
    values = {}
    for name, metric in metrics.items():
        for label, value in zip(spec["class_values"], metric.compute().tolist(), strict=True):
            values[f"{prefix}/{name}.{UNSAFE_METRIC_CHARS.sub('_', str(label))}"] = float(value)
    return values


class Head(Protocol):
    """What a tabular task learns: its loss on the model's outputs and its metrics."""

    directions: dict[str, str]  # metric name → "max" | "min": whether larger is better

    def loss(
        self, model: FeatureModel, outputs: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor: ...

    def metrics(self, spec: dict[str, Any]) -> dict[str, Metric]:
        """Fresh metric objects, by name (`acc` → logged as `val/acc`, `test/acc`)."""
        ...

    def metric_inputs(
        self, model: FeatureModel, outputs: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(predictions, target) in the form the metrics take."""
        ...


class TabularModule(L.LightningModule):
    def __init__(
        self,
        spec: dict[str, Any],
        head: Head,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        model: torch.nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.head = head
        # another task's net (images: a ResNet) trained the same way; a table's FeatureModel else
        self.model = model if model is not None else FeatureModel(spec)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # per stage, so val and test accumulate separately (torchmetrics syncs them across ranks)
        self.metrics = torch.nn.ModuleDict(
            {stage: torch.nn.ModuleDict(head.metrics(spec)) for stage in EVAL_STAGES}
        )
        # per class (precision, recall, F1), on the test split only: imbalance shows there
        self.class_metrics = torch.nn.ModuleDict(class_metric_objects(head, spec))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model(features)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Any:
        features, target = batch
        loss = self.head.loss(self.model, self.model(features), target)
        # the loss only (a per-step metric update costs ~0.5 ms, a quarter of a small model's step),
        # and not on the progress bar: that would copy it to the host after every batch
        self.log("train/loss", loss, on_step=True, batch_size=len(target))
        return loss

    def _evaluate(
        self, batch: tuple[torch.Tensor, torch.Tensor], stage: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features, target = batch
        outputs = self.model(features)
        loss = self.head.loss(self.model, outputs, target)
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(target))
        predictions, truth = self.head.metric_inputs(self.model, outputs, target)
        for name, metric in self.metrics[stage].items():
            metric.update(predictions, truth)
            self.log(f"{stage}/{name}", metric, on_epoch=True)
        return predictions, truth

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        predictions, truth = self._evaluate(batch, "test")
        for metric in self.class_metrics.values():
            metric.update(predictions, truth)

    def on_test_epoch_end(self) -> None:
        for name, value in per_class(self.spec, dict(self.class_metrics), "test").items():
            self.log(name, value)
        for metric in self.class_metrics.values():
            metric.reset()

    def parameter_groups(self) -> Any:
        """What the optimizer trains: every parameter (a subclass may give groups with their own lr)."""
        return list(self.parameters())

    def configure_optimizers(self) -> Any:
        device = next(self.parameters()).device
        optimizer = with_fused_default(self.optimizer_factory, device)(
            params=self.parameter_groups()
        )
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": self.scheduler_factory(optimizer=optimizer),
                "interval": "epoch",
            },
        }

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        # `trainer.gradient_clip_val`, clipped here as every task does (optim.py): Lightning's own
        # clipping refuses the fused AdamW used on GPUs under mixed precision
        clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # what `trainpipe eval`, `trainpipe export` and the registry need to rebuild the model
        checkpoint["trainpipe_model"] = self.spec
