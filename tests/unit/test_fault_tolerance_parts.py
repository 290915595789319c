"""The pieces behind exact resume and lossless tracking, one at a time."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from trainpipe.callbacks.divergence import DivergenceError, DivergenceGuard
from trainpipe.data.sampler import EpochBatchSampler
from trainpipe.runtime import rng
from trainpipe.tracking.journal import Journal


def test_sampler_order_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch() -> None:
    sampler = EpochBatchSampler(100, batch_size=8, shuffle=True, seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2)
    again = iter(sampler)
    first_three = [next(again) for _ in range(3)]
    sampler.in_flight = 1  # a checkpoint taken while the 3rd batch is fetched but not trained on
    state = sampler.state_dict()
    assert state == {"epoch": 2, "served": 2}
    restored = EpochBatchSampler(100, batch_size=8, shuffle=True, seed=3)
    restored.load_state_dict(state)
    restored.set_epoch(2)
    assert first_three[:2] + list(restored) == full
    restored.set_epoch(3)  # the skip applies to the checkpoint's epoch only
    assert len(list(restored)) == len(full)


def test_eval_shards_cover_every_row_exactly_once_train_shards_are_even() -> None:
    shards = [
        list(EpochBatchSampler(101, 10, shuffle=False, seed=0, rank=r, world_size=4, pad=False))
        for r in range(4)
    ]
    rows = sorted(i for shard in shards for batch in shard for i in batch)
    assert rows == list(range(101))
    train = [
        EpochBatchSampler(101, 10, shuffle=True, seed=0, rank=r, world_size=4) for r in range(4)
    ]
    assert len({len(s) for s in train}) == 1  # same number of steps on every rank


def test_rng_capture_restore_replays_the_same_draws() -> None:
    import random

    import numpy as np

    state = rng.capture()
    draws = (random.random(), np.random.rand(), torch.rand(1).item())
    rng.restore(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws
    saved = Path(__import__("tempfile").mkdtemp()) / "rng.pt"
    torch.save(state, saved)
    rng.restore(torch.load(saved, weights_only=True))  # weights-only safe
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws


def test_journal_survives_a_cut_off_write_and_remembers_what_was_sent(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append(
        {"op": "create_run", "key": "k"}, {"op": "log", "metrics": [["train/loss", 1.0, 5, 0]]}
    )
    journal.mark_sent(1, run_id="abc")
    with open(tmp_path / "journal.jsonl", "a") as handle:
        handle.write('{"seq": 3, "op": "log", "metr')  # killed mid-write
    reopened = Journal(tmp_path)
    assert [e["seq"] for e in reopened.entries] == [1, 2]
    assert reopened.run_id == "abc" and [e["seq"] for e in reopened.unsent()] == [2]
    assert ("train/loss", 0) in reopened.metric_points
    reopened.append({"op": "status", "status": "FINISHED"})
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]


def _module_with(value: float) -> torch.nn.Module:
    module = torch.nn.Linear(2, 1)
    with torch.no_grad():
        module.weight[0, 0] = value
    module.weight.grad = torch.full_like(module.weight, value)
    module.bias.grad = torch.zeros_like(module.bias)
    return module


def test_divergence_guard_stops_on_bad_gradients_or_weights_and_can_skip() -> None:
    trainer = SimpleNamespace(global_step=3)
    strict = DivergenceGuard(check_gradients=True)
    strict.on_train_batch_start(trainer, None, (torch.zeros(1),), 0)
    with pytest.raises(DivergenceError, match="gradient norm=nan at step 4"):
        strict.on_before_optimizer_step(trainer, _module_with(float("nan")), None)
    with pytest.raises(DivergenceError, match="non-finite weights after step 9"):
        DivergenceGuard().check_weights(_module_with(float("inf")), 9)
    DivergenceGuard().check_weights(_module_with(1.0), 9)  # finite: fine

    lenient = DivergenceGuard(max_skipped_batches=1, check_gradients=True)
    module = _module_with(float("nan"))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    lenient.on_train_batch_start(trainer, None, (torch.zeros(1),), 0)
    lenient.on_before_optimizer_step(
        trainer, SimpleNamespace(parameters=module.parameters, print=lambda *_: None), optimizer
    )
    assert (
        lenient.skipped == 1 and module.weight.grad is None
    )  # the step will leave the weights alone


def test_resume_checkpoint_runs_its_hooks_before_each_save_and_keeps_the_newest(
    tmp_path: Path,
) -> None:
    import lightning as L
    from lightning.pytorch.demos.boring_classes import BoringModel

    from trainpipe.callbacks.resume_checkpoint import ResumeCheckpoint
    from trainpipe.runtime.checkpoint_io import AtomicCheckpointIO, step_checkpoints

    calls: list[tuple[int, list[int]]] = []

    def record(trainer: object, step: int) -> None:  # what exists when the hook runs
        calls.append((step, [s for s, _ in step_checkpoints(tmp_path)]))

    checkpoint = ResumeCheckpoint(
        every_n_steps=2, keep_last=2, dirpath=str(tmp_path), before_save=[record]
    )
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=5,
        limit_val_batches=0,
        callbacks=[checkpoint],
        plugins=[AtomicCheckpointIO()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(BoringModel())
    # steps 2 and 4 inside the epoch (saved when the next step starts), 5 at the epoch's end;
    # each hook ran before its own checkpoint existed
    assert calls == [(2, []), (4, [2]), (5, [4, 2])]
    assert [step for step, _ in step_checkpoints(tmp_path)] == [5, 4]  # keep_last=2


class FakeCuda:
    """torch.cuda's RNG primitives for `count` visible GPUs, on a machine with none: each device
    keeps its own state, and asking for a device that is not there fails as CUDA does."""

    def __init__(self, count: int, current: int = 0) -> None:
        self.count, self.current = count, current
        self.states = [torch.tensor([i], dtype=torch.uint8) for i in range(count)]

    def _index(self, device: Any) -> int:
        index = self.current if device in ("cuda", None) else int(getattr(device, "index", device))
        if index >= self.count:
            raise IndexError(f"CUDA device {index} of {self.count}")
        return index

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, value in {
            "is_available": lambda: True,
            "is_initialized": lambda: True,
            "device_count": lambda: self.count,
            "current_device": lambda: self.current,
            "get_rng_state": lambda device="cuda": self.states[self._index(device)].clone(),
            "set_rng_state": lambda state, device="cuda": self.states.__setitem__(
                self._index(device), state.clone()
            ),
        }.items():
            monkeypatch.setattr(torch.cuda, name, value)


def test_rng_of_a_rank_on_gpu_3_of_4_resumes_on_a_node_with_one_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 20, item 7: the state saved is the rank's own device's, and it restores there,
    whatever the number of GPUs visible now (one state per visible GPU would fail by index)."""
    saved_on = FakeCuda(count=4, current=3)
    saved_on.install(monkeypatch)
    saved_on.states[3] = torch.tensor([42], dtype=torch.uint8)
    state = rng.capture()
    resumed_on = FakeCuda(count=1, current=0)
    resumed_on.install(monkeypatch)
    rng.restore(state)
    assert resumed_on.states[0].tolist() == [42]
