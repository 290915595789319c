"""Serve prepared splits to torch a batch at a time.

The sampler hands a whole list of indices to `__getitems__`, which does one Arrow `take` and one
numpy → torch conversion per batch; no per-row Python, no per-row collate.
"""

from __future__ import annotations

from typing import Any

import datasets
import torch
from torch.utils.data import Dataset

from trainpipe.data.sampler import EpochBatchSampler, ResumableDataLoader


class ArrowBatches(Dataset):
    """A `datasets.Dataset` with `features`/`label` columns, read as (float32 [B, F], int64 [B]) batches."""

    def __init__(self, split: datasets.Dataset) -> None:
        self.split = split.with_format("numpy", columns=["features", "label"])

    def __len__(self) -> int:
        return len(self.split)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.split[indices]
        return torch.from_numpy(batch["features"]), torch.from_numpy(batch["label"]).long()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        features, label = self.__getitems__([index])
        return features[0], label[0]


def keep_batch(batch: Any) -> Any:
    """Collate function for `ArrowBatches`: the batch is already stacked."""
    return batch


def batch_loader(
    split: datasets.Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> ResumableDataLoader:
    """A DataLoader over this rank's share of a prepared split.

    Training loaders (`shuffle=True`) pad the split so all ranks take the same number of steps;
    evaluation loaders do not, so every row is scored exactly once across ranks.
    """
    sampler = EpochBatchSampler(
        len(split),
        batch_size,
        shuffle=shuffle,
        seed=seed,
        rank=rank,
        world_size=world_size,
        pad=shuffle,
    )
    return ResumableDataLoader(
        ArrowBatches(split),
        batch_sampler=sampler,
        collate_fn=keep_batch,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
