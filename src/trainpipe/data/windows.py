"""Serve a packed token array as `[batch, seq_len]` (input, target) windows.

A window is seq_len + 1 consecutive tokens starting at some offset; the sampler decides which
offsets each step reads, the dataset cuts a whole batch with one numpy gather.
- train: each epoch takes non-overlapping windows at `offset + k * seq_len`, with `offset` drawn in
  [0, seq_len) from (seed, epoch), so the cut points move between epochs; the windows are shuffled,
  padded and dealt out per rank exactly like `EpochBatchSampler` rows (resumable mid-epoch), and
  the epoch's smaller last batch is dropped: a compiled GPT sees one batch shape, never recompiles;
- val/test: fixed windows from offset 0, in order, no padding: every window is scored once across
  ranks and the loss is comparable between runs.
On a GPU a token array that fits is kept there and windows are cut on the device
(`data/loader.py: place_on`).
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from trainpipe.data.loader import device_indices, keep_batch
from trainpipe.data.sampler import EpochBatchSampler, ResumableDataLoader
from trainpipe.errors import DataError


class TokenWindows(Dataset):
    """Windows of `seq_len + 1` tokens of a flat token array, addressed by their start offset."""

    def __init__(self, tokens: np.ndarray, seq_len: int) -> None:
        self.tokens: np.ndarray | torch.Tensor = tokens
        self.seq_len = seq_len
        self._span: np.ndarray | torch.Tensor = np.arange(seq_len + 1)

    @property
    def nbytes(self) -> int:
        return len(self.tokens) * 4  # kept as int32 on the device

    def to_device(self, device: torch.device) -> None:
        """Keep the tokens on `device` (int32: every vocabulary fits); windows are cut there."""
        tokens = np.asarray(self.tokens).astype(np.int32)
        self.tokens = torch.from_numpy(tokens).to(device)
        self._span = torch.arange(self.seq_len + 1, device=device)

    def __getitems__(self, starts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.tokens, torch.Tensor):  # on the device: views cost nothing there
            rows = device_indices(starts, self.tokens.device)
            batch = self.tokens[rows[:, None] + self._span].long()
            return batch[:, :-1], batch[:, 1:]
        # on the host, bound for a device: each half contiguous, so the pinned copy goes straight
        # to the GPU (a strided view would be made contiguous in pageable memory first, a copy
        # that waits for the GPU); the same one cast per token as slicing a cast block
        block = self.tokens[np.asarray(starts)[:, None] + self._span]
        halves = (block[:, :-1], block[:, 1:])
        inputs, targets = (torch.from_numpy(np.ascontiguousarray(h, np.int64)) for h in halves)
        return inputs, targets

    def __getitem__(self, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([start])
        return x[0], y[0]

    def __getstate__(self) -> dict[str, Any]:
        # Pickling a memmap copies all of its tokens; a spawned DataLoader worker (macOS, Windows)
        # reopens the same file instead.
        state = dict(self.__dict__)
        tokens = self.tokens
        if isinstance(tokens, np.memmap) and isinstance(tokens.base, mmap.mmap):
            state["tokens"] = (
                "memmap",
                tokens.filename,
                tokens.dtype.str,
                tokens.offset,
                tokens.shape,
            )
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state["tokens"], tuple):
            _, filename, dtype, offset, shape = state["tokens"]
            state["tokens"] = np.memmap(filename, dtype=dtype, mode="r", offset=offset, shape=shape)
        self.__dict__.update(state)


class WindowBatchSampler(EpochBatchSampler):
    """`EpochBatchSampler` over window numbers, yielding each window's start offset.

    A train epoch has a fixed number of windows whatever its offset, so every epoch (and every
    rank) takes the same number of steps: `(N - seq_len) // seq_len`, the count that fits at the
    largest offset (at least one window; a split shorter than two windows draws a smaller offset).
    """

    def __init__(
        self,
        num_tokens: int,
        seq_len: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_tokens < seq_len + 1:
            raise DataError(
                f"data.seq_len: {num_tokens} tokens cannot fill one window of seq_len + 1 = {seq_len + 1}"
            )
        windows = (
            max(1, (num_tokens - seq_len) // seq_len) if shuffle else (num_tokens - 1) // seq_len
        )
        super().__init__(
            windows,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            rank=rank,
            world_size=world_size,
            pad=shuffle,
            drop_last=shuffle,
        )
        self.seq_len = seq_len
        # the last window must end inside the array: start + seq_len <= num_tokens - 1
        self.max_offset = min(seq_len - 1, num_tokens - 1 - windows * seq_len)

    def offset(self) -> int:
        """This epoch's cut point: 0 for evaluation, else a pure function of (seed, epoch)."""
        if not self.shuffle:
            return 0
        return int(np.random.default_rng([self.seed, self.epoch]).integers(self.max_offset + 1))

    def _rank_indices(self) -> list[int]:
        windows = np.asarray(super()._rank_indices(), dtype=np.int64)
        return (self.offset() + windows * self.seq_len).tolist()


def window_loader(
    tokens: np.ndarray,
    seq_len: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> ResumableDataLoader:
    """A DataLoader of `(x, y)` int64 batches `[B, seq_len]` (y is x shifted by one token) over
    this rank's share of `tokens`: shuffled, moving windows for training (`shuffle=True`), fixed
    unpadded ones for evaluation."""
    sampler = WindowBatchSampler(
        len(tokens),
        seq_len,
        batch_size,
        shuffle=shuffle,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )
    return ResumableDataLoader(
        TokenWindows(tokens, seq_len),
        batch_sampler=sampler,
        collate_fn=keep_batch,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
