"""Serve prepared splits to torch a batch at a time.

The `features` column is read once as a numpy matrix that views the Arrow buffer (for an on-disk
dataset: the memory-mapped cache file, so nothing is loaded up front); each batch is one numpy
fancy-index of the sampled rows and one numpy → torch hand-over. No per-row Python, no per-row
collate.

On a GPU (`place_on`): a split that fits (`fits_on_device`) is copied to the device once and
every batch is gathered there, so a step costs no host→device copy of data; otherwise batches
come from pinned host memory, which Lightning copies with `non_blocking=True` (no stall). Either
way the sampler still picks the rows, so the order and resuming are unchanged.

A per-sample transform (decoding, augmentation: `transform(features, target) -> (features,
target)`) runs on each row of a batch where the batch is cut, in a DataLoader worker process
when `data.num_workers` > 0. Its random draws come from torch's RNG seeded with the batch's own
seed (data/sampler.py), inside `fork_rng`: the same batch whatever the worker, also after a
resume, and the training process's RNG is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import Dataset

from trainpipe.data.sampler import EpochBatchSampler, ResumableDataLoader

# (features [F], target []) -> (features, target) of one row
SampleTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
# a split is kept on the GPU when it takes at most this much, and this share of the GPU's memory
DEVICE_RESIDENT_MAX_BYTES = 2**30
DEVICE_RESIDENT_MAX_SHARE = 0.05


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    """A fixed-size-list column as a [rows, width] numpy array, zero-copy when it is one chunk."""
    lists = column.chunk(0) if column.num_chunks == 1 else pa.concat_arrays(column.chunks)
    width = lists.type.list_size
    return lists.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)


class ArrowBatches(Dataset):
    """A prepared table split read as (features float32 [B, F], target [B]) batches; the target is
    int64 class indices or float32 values, as the split stores it."""

    def __init__(self, split: datasets.Dataset) -> None:
        if split._indices is not None:  # a split view: write its rows out once (cached by datasets)
            split = split.flatten_indices()
        table = split.data.table
        self.features = _matrix(table.column("features"))
        target = table.column("target").to_numpy()
        self.targets = target.astype(np.int64 if target.dtype.kind in "iu" else np.float32)

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def nbytes(self) -> int:
        return self.features.nbytes + self.targets.nbytes

    def to_device(self, device: torch.device) -> None:
        """Keep the split on `device`; batches are then gathered there."""
        self.features = torch.from_numpy(np.ascontiguousarray(self.features)).to(device)
        self.targets = torch.from_numpy(self.targets).to(device)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.features, torch.Tensor):
            rows = device_indices(indices, self.features.device)
            return self.features[rows], self.targets[rows]
        rows = np.asarray(indices)
        return torch.from_numpy(self.features[rows]), torch.from_numpy(self.targets[rows])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        features, target = self.__getitems__([index])
        return features[0], target[0]


class TransformedBatches(ArrowBatches):
    """`ArrowBatches` with a per-sample transform applied to each row of a batch."""

    def __init__(self, split: datasets.Dataset, transform: SampleTransform) -> None:
        super().__init__(split)
        self.transform = transform

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        features, targets = super().__getitems__(indices)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(getattr(indices, "seed", 0))
            rows = [self.transform(x, y) for x, y in zip(features, targets, strict=True)]
        return torch.stack([x for x, _ in rows]), torch.stack([y for _, y in rows])


def device_indices(indices: list[int], device: torch.device) -> torch.Tensor:
    """Row numbers on `device` without a stall: from pinned memory, copied asynchronously (a
    copy from ordinary memory would wait for the GPU to finish everything queued before it)."""
    rows = torch.tensor(indices, dtype=torch.int64, pin_memory=device.type == "cuda")
    return rows.to(device, non_blocking=True)


def fits_on_device(nbytes: int, device: torch.device) -> bool:
    """Whether a split of `nbytes` is small enough to keep on the GPU for the whole fit."""
    if device.type != "cuda":
        return False
    total = torch.cuda.get_device_properties(device).total_memory
    return nbytes <= min(DEVICE_RESIDENT_MAX_BYTES, DEVICE_RESIDENT_MAX_SHARE * total)


def place_on(loader: Any, device: torch.device) -> Any:
    """Serve `loader`'s batches for a model on `device` (see the module docstring)."""
    if device.type != "cuda":
        return loader
    dataset = loader.dataset
    resident = hasattr(dataset, "to_device") and loader.num_workers == 0
    if resident and fits_on_device(dataset.nbytes, device):
        dataset.to_device(device)
    else:
        # read when each epoch's iterator starts; DataLoader allows setting it after construction
        loader.pin_memory = True
    return loader


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
    transform: SampleTransform | None = None,
) -> ResumableDataLoader:
    """A DataLoader over this rank's share of a prepared split, each row through `transform`.

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
        ArrowBatches(split) if transform is None else TransformedBatches(split, transform),
        batch_sampler=sampler,
        collate_fn=keep_batch,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
