"""Which rows each step sees: a pure function of (seed, epoch, rank, world size), resumable mid-epoch.

`EpochBatchSampler` replaces both Lightning's DistributedSampler and the DataLoader's shuffling:
- train: one seeded permutation per epoch, padded to a multiple of the world size (every rank
  takes the same number of steps) and dealt out rank::world_size, as DistributedSampler does;
- val/test: no padding, so no row is counted twice and metrics equal the whole-split value;
- `drop_last` (token windows' training): an epoch's smaller last batch is left out when there is a
  full one, so every step has the same shape and a compiled model never recompiles for it (the
  rows left out change with each epoch's shuffle);
- `state_dict()` records how many batches of the current epoch were served, and a restored
  sampler skips exactly those: a resumed job sees the rows it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler


class EpochBatchSampler(Sampler[list[int]]):
    def __init__(
        self,
        num_rows: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
        drop_last: bool = False,
    ) -> None:
        self.num_rows = num_rows
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pad = pad
        self.drop_last = drop_last
        self.epoch = 0
        self.served = 0  # batches of `epoch` handed out so far
        self.in_flight = (
            0  # handed out but not trained on yet (set while a checkpoint is taken mid-step)
        )
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches to skip)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rank_indices(self) -> list[int]:
        if self.shuffle:
            order = torch.randperm(
                self.num_rows, generator=torch.Generator().manual_seed(self.seed + self.epoch)
            ).tolist()
        else:
            order = list(range(self.num_rows))
        if self.pad and self.world_size > 1:
            missing = -len(order) % self.world_size
            order += (order * (missing // max(len(order), 1) + 1))[:missing]
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        if self.pad and self.world_size > 1:
            per_rank = -(-self.num_rows // self.world_size)
        else:
            per_rank = len(range(self.rank, self.num_rows, self.world_size))
        if self.drop_last and per_rank >= self.batch_size:
            return per_rank // self.batch_size
        return -(-per_rank // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        indices = self._rank_indices()
        batches = [
            indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)
        ]
        if self.drop_last and len(batches) > 1 and len(batches[-1]) < self.batch_size:
            batches.pop()
        start = 0
        if self._resume_at is not None and self._resume_at[0] == self.epoch:
            start = min(self._resume_at[1], len(batches))
        self._resume_at = None
        self.served = start
        for batch in batches[start:]:
            self.served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "served": self.served - self.in_flight}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = state["epoch"]
        self._resume_at = (state["epoch"], state["served"])


class ResumableDataLoader(DataLoader):
    """A DataLoader whose position is saved in Lightning checkpoints (Lightning's `_Stateful` protocol)."""

    def state_dict(self) -> dict[str, Any]:
        return self.batch_sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_sampler.load_state_dict(state)
