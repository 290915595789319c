"""Checkpoints are written atomically and loaded weights-only."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from trainpipe.runtime.checkpoint_io import atomic_torch_save, load_checkpoint_file


class Unpicklable:
    def __reduce__(self):  # noqa: D105
        raise RuntimeError("disk full")  # a save that dies half way


class Arbitrary:
    pass


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "ckpt" / "last.ckpt"
    atomic_torch_save({"state_dict": {"w": torch.ones(3)}, "epoch": 2}, path)
    loaded = load_checkpoint_file(path)
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(3)) and loaded["epoch"] == 2
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temp file left


def test_failed_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, path)
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_torch_save({"step": 2, "bad": Unpicklable()}, path)
    assert load_checkpoint_file(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_loading_refuses_arbitrary_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"payload": Arbitrary()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint_file(path)
