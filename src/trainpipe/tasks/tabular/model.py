"""The deployable tabular model: raw feature rows in, outputs on the target's scale out.

Standardisation (train-split mean/std) and the reshape to the net's input shape live inside the
module as buffers, so weights + spec are all a registered model needs. `build_net` is the one
place a net is built from a spec: for training, from a checkpoint and in the MLflow pyfunc.

A spec is the data spec (`TabularTask.data_spec`, tasks/tabular/task.py) plus `net` (`_target_` +
kwargs, from `net_spec`) and `name` (`build_feature_module` adds both).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

# A spec read from a file (registered model, checkpoint) may only name trainpipe's own nets:
# loading a model never imports code the spec picks.
TRUSTED_NET_PREFIX = "trainpipe."


def net_spec(factory: functools.partial) -> dict[str, Any]:
    """The `_target_` + kwargs of a configured net factory (what rebuilds it later), as plain
    JSON-able values (checkpoints are loaded weights-only: no OmegaConf objects inside)."""
    from omegaconf import OmegaConf

    func = factory.func
    kwargs = {
        k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v
        for k, v in factory.keywords.items()
    }
    return {"_target_": f"{func.__module__}.{func.__qualname__}", **kwargs}


def build_net(
    spec: dict[str, Any], input_shape: Sequence[int], num_outputs: int, from_file: bool
) -> nn.Module:
    target = spec["_target_"]
    if from_file and not target.startswith(TRUSTED_NET_PREFIX):
        raise ValueError(f"net {target!r} is not a trainpipe net; refusing to import it")
    module_name, _, class_name = target.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    kwargs = {k: v for k, v in spec.items() if not k.startswith("_")}
    return cls(input_shape=tuple(input_shape), num_outputs=num_outputs, **kwargs)


class FeatureModel(nn.Module):
    """standardise the numeric inputs, embed the category indices → reshape → net.

    Input float32 [batch, numeric inputs + categorical columns], as data/columns.py encodes raw
    rows (for an all-numeric table: just the features); output [batch, outputs] on the model's
    scale (logits, or standardised target values: see `to_target_scale`)."""

    def __init__(self, spec: dict[str, Any], from_file: bool = False) -> None:
        super().__init__()
        self.input_shape = tuple(spec["input_shape"])
        self.net = build_net(spec["net"], self.input_shape, spec["num_outputs"], from_file)
        self.numeric_width = len(spec["feature_mean"])
        self._init_embeddings(spec.get("embeddings", []))
        self.register_buffer("feature_mean", torch.tensor(spec["feature_mean"]))
        self.register_buffer("feature_std", torch.tensor(spec["feature_std"]))
        self.register_buffer("target_mean", torch.tensor(float(spec.get("target_mean", 0.0))))
        self.register_buffer("target_std", torch.tensor(float(spec.get("target_std", 1.0))))
        weights = spec.get("class_weights")
        # not persistent: a training setting, not a weight (packages of older models lack it)
        self.register_buffer(
            "class_weights", torch.tensor(weights) if weights else None, persistent=False
        )

    def _init_embeddings(self, sizes: list[list[int]]) -> None:
        """An embedding per categorical column, sized from its cardinality (data/columns.py),
        stored as the blocks of ONE table: column c owns rows offset[c] … and its first
        width[c] dims. The lookup is one gather from the flat table (backward: one index_add):
        a lookup per column made a 3-column table's step ~15 % slower, and an nn.Embedding
        lookup narrowed to each column's width was 1–5 points slower per epoch than the gather,
        with the same values and gradients (benchmarks/tables.py, docs/benchmarks.md §7)."""
        self.embedding: nn.Embedding | None = None
        if not sizes:
            return
        rows = [r for r, _ in sizes]
        widths = [w for _, w in sizes]
        self.embedding = nn.Embedding(sum(rows), max(widths))
        # output position j reads column columns[j]'s category at flat index
        # category * max width + base[j], base[j] = offset of the column's block + the dim
        columns = [c for c, w in enumerate(widths) for _ in range(w)]
        base = [sum(rows[:c]) * max(widths) + d for c, w in enumerate(widths) for d in range(w)]
        self.register_buffer("embedding_columns", torch.tensor(columns), persistent=False)
        self.register_buffer("embedding_base", torch.tensor(base), persistent=False)

    def forward(self, features: Tensor) -> Tensor:
        x = (features[:, : self.numeric_width] - self.feature_mean) / self.feature_std
        if self.embedding is not None:
            categories = features[:, self.numeric_width :].long()
            flat = categories.index_select(1, self.embedding_columns) * self.embedding.embedding_dim
            flat = flat + self.embedding_base
            table = self.embedding.weight.view(-1)
            embedded = table.index_select(0, flat.view(-1)).view(flat.shape)
            x = torch.cat([x, embedded], dim=1)
        return self.net(x.reshape(x.shape[0], *self.input_shape))

    def standardise_target(self, target: Tensor) -> Tensor:
        return (target - self.target_mean) / self.target_std

    def to_target_scale(self, outputs: Tensor) -> Tensor:
        return outputs * self.target_std + self.target_mean
