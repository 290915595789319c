"""Token windows: shapes, shifted targets, rank sharding, seeded epochs, mid-epoch resume."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from trainpipe.data.windows import TokenWindows, window_loader
from trainpipe.errors import DataError

SEQ = 16


@pytest.fixture
def tokens(tmp_path: Path) -> np.memmap:
    """1,000 packed tokens whose value is their position, so a window shows where it was cut."""
    path = tmp_path / "train.bin"
    np.arange(1000, dtype=np.uint16).tofile(path)
    return np.memmap(path, dtype=np.uint16, mode="r")


def starts(loader) -> list[int]:
    return [int(s) for x, _ in loader for s in x[:, 0]]


def test_batches_are_int64_windows_with_targets_shifted_by_one(tokens: np.memmap) -> None:
    loader = window_loader(tokens, SEQ, batch_size=8, shuffle=True, seed=0)
    for x, y in loader:
        assert x.dtype == y.dtype == torch.int64
        assert x.shape == y.shape and x.shape[1] == SEQ and len(x) <= 8
        assert torch.equal(y[:, :-1], x[:, 1:])
        # every row is seq_len + 1 consecutive tokens of the array
        assert torch.equal(y - x, torch.ones_like(x))
        assert torch.equal(x, x[:, :1] + torch.arange(SEQ))


def test_host_batches_are_contiguous_so_pinned_copies_go_straight_to_the_gpu(
    tokens: np.memmap,
) -> None:
    """Issue 20, item 8: a strided view ([B, T+1][:, :-1]) is copied to a GPU through a pageable,
    contiguous temporary (a blocking copy), pinned or not; each half must be contiguous itself."""
    for x, y in window_loader(tokens, SEQ, 8, True, 0):
        assert x.is_contiguous() and y.is_contiguous()
        assert x.untyped_storage().nbytes() == y.untyped_storage().nbytes() == x.numel() * 8


def test_eval_windows_are_scored_once_across_ranks_without_padding(tokens: np.memmap) -> None:
    per_rank = [
        starts(window_loader(tokens, SEQ, 5, shuffle=False, seed=0, rank=r, world_size=2))
        for r in range(2)
    ]
    every_window = list(range(0, (len(tokens) - 1) // SEQ * SEQ, SEQ))  # 62 windows from offset 0
    assert sorted(per_rank[0] + per_rank[1]) == every_window
    assert per_rank[0] == every_window[0::2]  # in order, dealt rank::world_size
    again = starts(window_loader(tokens, SEQ, 5, shuffle=False, seed=9, rank=0, world_size=2))
    assert again == per_rank[0]  # fixed: comparable across runs and seeds


def test_train_ranks_take_equal_steps_over_non_overlapping_windows(tokens: np.memmap) -> None:
    loaders = [window_loader(tokens, SEQ, 4, True, seed=3, rank=r, world_size=3) for r in range(3)]
    steps = [len(list(loader)) for loader in loaders]
    assert steps == [len(loaders[0])] * 3
    taken = [s for loader in loaders for s in starts(loader)]
    offset = taken[0] % SEQ
    assert all(s % SEQ == offset for s in taken)  # one cut point per epoch: no overlap
    # 61 windows padded to 63, 21 a rank: 5 full batches each, the one-window batch dropped
    assert steps == [5, 5, 5]
    assert len(set(taken)) == len(taken) == 60  # all but the dropped windows, none repeated
    assert max(taken) + SEQ <= len(tokens) - 1


def test_every_training_batch_is_full_so_a_compiled_model_sees_one_shape(
    tokens: np.memmap,
) -> None:
    for world_size, batch_size in ((1, 8), (2, 5), (3, 7)):
        for rank in range(world_size):
            loader = window_loader(
                tokens, SEQ, batch_size, True, 0, rank=rank, world_size=world_size
            )
            for epoch in range(3):
                loader.batch_sampler.set_epoch(epoch)
                shapes = {tuple(x.shape) for x, _ in loader}
                assert shapes == {(batch_size, SEQ)}, (world_size, rank, epoch)
                assert len(loader) == len(list(loader.batch_sampler))
    # evaluation keeps its last, smaller batch: every window is scored
    evaluation = window_loader(tokens, SEQ, 8, False, 0)
    assert [len(x) for x, _ in evaluation][-1] == 62 % 8


def test_epoch_order_is_a_function_of_seed_and_epoch_only(tokens: np.memmap) -> None:
    def epoch_starts(seed: int, epoch: int, warmup_epochs: int = 0) -> list[int]:
        loader = window_loader(tokens, SEQ, 8, True, seed=seed)
        for e in range(warmup_epochs):  # earlier epochs must not change what this one serves
            loader.batch_sampler.set_epoch(e)
            list(loader)
        loader.batch_sampler.set_epoch(epoch)
        return starts(loader)

    assert epoch_starts(5, 2) == epoch_starts(5, 2, warmup_epochs=2)
    assert epoch_starts(5, 2) != epoch_starts(5, 3)
    assert epoch_starts(5, 2) != epoch_starts(6, 2)
    offsets = {epoch_starts(5, e)[0] % SEQ for e in range(8)}
    assert len(offsets) > 1  # the cut points move between epochs


def test_resume_mid_epoch_serves_exactly_the_remaining_batches(tokens: np.memmap) -> None:
    full = window_loader(tokens, SEQ, 4, True, seed=1, rank=1, world_size=2)
    full.batch_sampler.set_epoch(3)
    expected = [x for x, _ in full]
    interrupted = window_loader(tokens, SEQ, 4, True, seed=1, rank=1, world_size=2)
    interrupted.batch_sampler.set_epoch(3)
    served = iter(interrupted)
    for _ in range(3):
        next(served)
    state = interrupted.state_dict()
    assert state == {"epoch": 3, "served": 3}
    resumed = window_loader(tokens, SEQ, 4, True, seed=1, rank=1, world_size=2)
    resumed.load_state_dict(state)
    rest = [x for x, _ in resumed]
    assert len(rest) == len(expected) - 3
    assert all(torch.equal(a, b) for a, b in zip(rest, expected[3:], strict=True))


def test_worker_processes_serve_the_same_batches(tokens: np.memmap) -> None:
    in_process = [x for x, _ in window_loader(tokens, SEQ, 8, True, seed=2)]
    workers = [x for x, _ in window_loader(tokens, SEQ, 8, True, seed=2, num_workers=1)]
    assert all(torch.equal(a, b) for a, b in zip(in_process, workers, strict=True))


def test_a_pickled_dataset_reopens_the_token_file_instead_of_copying_it(tokens: np.memmap) -> None:
    dataset = TokenWindows(tokens, SEQ)
    blob = pickle.dumps(dataset)
    assert len(blob) < 1000  # the 2,000 bytes of tokens are not in it
    copy = pickle.loads(blob)
    assert isinstance(copy.tokens, np.memmap)
    for a, b in zip(copy.__getitems__([0, 7]), dataset.__getitems__([0, 7]), strict=True):
        assert torch.equal(a, b)


def test_a_split_shorter_than_two_windows_still_trains() -> None:
    short = np.arange(SEQ + 5, dtype=np.uint16)
    for epoch in range(6):
        loader = window_loader(short, SEQ, 4, True, seed=0)
        loader.batch_sampler.set_epoch(epoch)
        ((x, y),) = list(loader)
        assert x.shape == (1, SEQ) and int(y[0, -1]) <= SEQ + 4


def test_too_few_tokens_for_one_window_is_a_data_error() -> None:
    with pytest.raises(
        DataError, match=r"data.seq_len: 16 tokens cannot fill one window of seq_len \+ 1 = 17"
    ):
        window_loader(np.arange(16, dtype=np.uint16), SEQ, 4, True, seed=0)
