"""What a classifier learns: cross-entropy on the logits (weighted by class with
`data.class_weights=auto`); accuracy and macro F1 of the argmax, and per class on the test split.

torch is imported by the methods that compute: the task, and so its head, is looked up when a
config is checked, before torch is imported."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torchmetrics import Metric


class ClassificationHead:
    # whether larger is better, next to the metrics below (the promotion gate reads it)
    directions = {"acc": "max", "f1": "max"}

    def loss(self, model: Any, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        # data.class_weights=auto: inverse class frequency (tasks/tabular/model.py buffer)
        return F.cross_entropy(outputs, target, weight=getattr(model, "class_weights", None))

    def metrics(self, spec: dict[str, Any]) -> dict[str, Metric]:
        from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

        classes = spec["num_outputs"]
        return {
            "acc": MulticlassAccuracy(classes, average="micro"),
            "f1": MulticlassF1Score(classes, average="macro"),
        }

    def class_metrics(self, spec: dict[str, Any]) -> dict[str, Metric]:
        """Per-class precision, recall and F1 (vectors, one value per class), for the test split."""
        from torchmetrics.classification import (
            MulticlassF1Score,
            MulticlassPrecision,
            MulticlassRecall,
        )

        classes = spec["num_outputs"]
        return {
            "precision": MulticlassPrecision(classes, average=None),
            "recall": MulticlassRecall(classes, average=None),
            "f1": MulticlassF1Score(classes, average=None),
        }

    def metric_inputs(
        self, model: Any, outputs: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return outputs.argmax(dim=-1), target
