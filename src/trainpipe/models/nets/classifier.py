"""The deployable model: raw feature rows in, class logits out.

Standardisation (train-split mean/std) and the reshape to the net's input shape live inside the
module as buffers, so a registered model needs nothing but its weights and `net_spec` to predict.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

# Only nets from this package can be rebuilt from a spec (a spec never names arbitrary code).
ALLOWED_NET_PREFIX = "trainpipe.models.nets."


def build_net(spec: dict[str, Any], input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """Instantiate a net from its config spec (`_target_` + kwargs) without Hydra."""
    target = spec["_target_"]
    if not target.startswith(ALLOWED_NET_PREFIX):
        raise ValueError(f"net target {target!r} is not a trainpipe net")
    module_name, _, class_name = target.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    kwargs = {k: v for k, v in spec.items() if not k.startswith("_")}
    return cls(input_shape=tuple(input_shape), num_classes=num_classes, **kwargs)


class FeatureClassifier(nn.Module):
    """standardise → reshape → net. Input: float32 [batch, num_features]."""

    def __init__(self, net: nn.Module, input_shape: Sequence[int], num_features: int) -> None:
        super().__init__()
        self.net = net
        self.input_shape = tuple(input_shape)
        self.register_buffer("feature_mean", torch.zeros(num_features))
        self.register_buffer("feature_std", torch.ones(num_features))

    def set_standardization(self, mean: Any, std: Any) -> None:
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def forward(self, features: Tensor) -> Tensor:
        x = (features - self.feature_mean) / self.feature_std
        return self.net(x.reshape(x.shape[0], *self.input_shape))
