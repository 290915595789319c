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
Each batch carries a seed, a pure function of (seed, epoch, rank, batch number), for the random
draws of a per-sample transform (data/loader.py): whichever process cuts the batch, and whether
or not the job was resumed, the batch comes out the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler


class SampleBatch(list):
    """The row numbers of one batch, and the seed of its per-sample transforms."""

    def __init__(self, rows: list[int], seed: int) -> None:
        super().__init__(rows)
        self.seed = seed


def batch_seed(*numbers: int) -> int:
    """A 63-bit seed from a few ints, the same in every process (unlike `hash` of a str)."""
    blob = ",".join(str(n) for n in numbers).encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little") >> 1


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
        self.start = 0  # batches of `epoch` skipped by a resume
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
        self.start = self.served = start
        for number, batch in enumerate(batches[start:], start):
            self.served += 1
            yield SampleBatch(batch, batch_seed(self.seed, self.epoch, self.rank, number))

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "served": self.served - self.in_flight}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = state["epoch"]
        self._resume_at = (state["epoch"], state["served"])


class ResumableDataLoader(DataLoader):
    """A DataLoader whose position is saved in Lightning checkpoints (Lightning's `_Stateful` protocol).

    Worker processes (`num_workers` > 0) are handed batches ahead of use, so the sampler has
    served more batches than were delivered: the position saved is the delivered count.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # DataLoader draws a seed for its workers from this generator each time it starts an
        # epoch with fresh workers; by default it draws from the global RNG, and how often depends
        # on num_workers, so the training's own random numbers (dropout) would too
        kwargs.setdefault("generator", torch.Generator().manual_seed(0))
        super().__init__(*args, **kwargs)

    def __iter__(self) -> Iterator[Any]:
        batches = super().__iter__()
        if self.num_workers == 0:  # one batch drawn from the sampler per batch delivered
            return batches
        self.batch_sampler.served = self.batch_sampler.start
        return self._delivered(batches)

    def _delivered(self, batches: Iterator[Any]) -> Iterator[Any]:
        sampler = self.batch_sampler
        for delivered, batch in enumerate(batches, sampler.start + 1):
            # set after the workers were handed more batches (inside next()), so it is the last
            # word until the next batch is asked for: a checkpoint in between reads it
            sampler.served = delivered
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return self.batch_sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_sampler.load_state_dict(state)
