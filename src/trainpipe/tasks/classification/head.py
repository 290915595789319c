"""What a classifier learns: cross-entropy on the logits; accuracy and macro F1 of the argmax."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score


class ClassificationHead:
    def loss(self, model: Any, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, target)

    def metrics(self, spec: dict[str, Any]) -> dict[str, Metric]:
        classes = spec["num_outputs"]
        return {
            "acc": MulticlassAccuracy(classes, average="micro"),
            "f1": MulticlassF1Score(classes, average="macro"),
        }

    def metric_inputs(
        self, model: Any, outputs: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return outputs.argmax(dim=-1), target
