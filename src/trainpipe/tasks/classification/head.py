"""What a classifier learns: cross-entropy on the logits; accuracy and macro F1 of the argmax.

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

        return F.cross_entropy(outputs, target)

    def metrics(self, spec: dict[str, Any]) -> dict[str, Metric]:
        from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

        classes = spec["num_outputs"]
        return {
            "acc": MulticlassAccuracy(classes, average="micro"),
            "f1": MulticlassF1Score(classes, average="macro"),
        }

    def metric_inputs(
        self, model: Any, outputs: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return outputs.argmax(dim=-1), target
