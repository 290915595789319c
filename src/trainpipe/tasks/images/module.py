"""The LightningModule of image classification: the tabular module's training loop (loss,
metrics, logging, clipping, checkpoint spec) around a ResNet (model.py), with the fine-tuning
parameter groups: a frozen backbone, or one trained at a fraction of the head's learning rate.
"""

from __future__ import annotations

from typing import Any

import torch

from trainpipe.tasks.classification.head import ClassificationHead
from trainpipe.tasks.tabular.module import TabularModule

TOP_K = 5
MIN_CLASSES_FOR_TOP_K = 10  # with fewer classes top-5 accuracy says little (or is always 1)


class ImageHead(ClassificationHead):
    """Cross-entropy; accuracy, macro F1 and, with >= 10 classes, top-5 accuracy. The metrics
    take the logits (top-5 needs them; torchmetrics takes the argmax itself for the others)."""

    directions = {**ClassificationHead.directions, "top5": "max"}

    def metrics(self, spec: dict[str, Any]) -> dict[str, Any]:
        from torchmetrics.classification import MulticlassAccuracy

        found = super().metrics(spec)
        if spec["num_outputs"] >= MIN_CLASSES_FOR_TOP_K:
            found["top5"] = MulticlassAccuracy(spec["num_outputs"], top_k=TOP_K, average="micro")
        return found

    def metric_inputs(
        self, model: Any, outputs: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return outputs, target


class ImageModule(TabularModule):
    def __init__(
        self, spec: dict[str, Any], optimizer: Any, scheduler: Any, net: Any, compile: Any = False
    ) -> None:
        super().__init__(spec, ImageHead(), optimizer, scheduler, model=net)
        self.compile_setting = compile  # auto: on when training on a CUDA device
        self._configured = False
        if spec["net"].get("freeze_backbone"):  # model=cnn has no backbone settings
            for parameter in net.backbone_parameters():
                parameter.requires_grad_(False)

    def configure_model(self) -> None:
        """The GPU path the language model takes too: on CUDA, channels_last weights and inputs
        (cuDNN's fastest convolution layout under bf16) and `torch.compile` (`model.compile`).
        In place (`Module.compile`): the state dict keeps its names, so checkpoints and the
        registered weights are the same whether compiled or not."""
        if self._configured:
            return
        self._configured = True
        trainer = self._trainer
        cuda = trainer is not None and trainer.strategy.root_device.type == "cuda"
        if cuda:
            self.model.to(memory_format=torch.channels_last)
            self.model.channels_last = True
        if self.compile_setting == "auto" and cuda or self.compile_setting is True:
            self.model.compile()

    def class_labels(self) -> list[Any]:
        return self.spec["classes"]

    def parameter_groups(self) -> Any:
        net = self.spec["net"]
        head = self.model.head_parameters()
        if net.get("freeze_backbone"):
            return head
        scale = float(net.get("backbone_lr_scale", 1.0))
        if scale == 1.0:
            return list(self.parameters())
        lr = (getattr(self.optimizer_factory, "keywords", None) or {}).get("lr", 1e-3)
        backbone = {"params": self.model.backbone_parameters(), "lr": lr * scale}
        return [backbone, {"params": head}]
