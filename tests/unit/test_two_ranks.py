"""What two ranks must agree on, in two real gloo processes (torch.multiprocessing, one spawn for
the module): the preemption vote (a signal on one rank stops both after the same step, without
a device read) and FSDP1's gradient clipping (one global norm, not one per rank's shard)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytestmark = pytest.mark.slow  # ~20-40 s: two spawned interpreters

STEPS, SIGNAL_ON_RANK_1_AT = 6, 2
CLIP = 0.5


def _preemption_vote(rank: int) -> dict[str, Any]:
    from trainpipe.callbacks.preemption import PreemptionHandler
    from trainpipe.runtime.failures import Preempted
    from trainpipe.runtime.signals import StopSignals

    signals, saved = StopSignals(), []
    handler = PreemptionHandler(lambda trainer, **_: saved.append(trainer.global_step), signals)
    # the parts of a Trainer the handler reads
    loop = SimpleNamespace(epoch_loop=SimpleNamespace())
    trainer = SimpleNamespace(world_size=2, global_step=0, fit_loop=loop)
    handler.on_train_start(trainer, None)
    stopped = None
    for step in range(STEPS):
        trainer.global_step = step
        if rank == 1 and step == SIGNAL_ON_RANK_1_AT:
            signals.received = "SIGTERM"  # what the signal handler records
        try:
            handler.on_train_batch_start(trainer, None, None, step)
        except Preempted as stop:
            stopped = {"step": step, "why": str(stop)}
            break
    signals.restore()
    return {"stopped": stopped, "saved": saved}


def _fsdp1_clip(rank: int) -> dict[str, Any]:
    from torch.distributed.fsdp import FullyShardedDataParallel

    from trainpipe.optim import clip_gradients

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 4))
    root = FullyShardedDataParallel(net, use_orig_params=True, device_id=torch.device("cpu"))
    inputs = torch.randn(4, 8, generator=torch.Generator().manual_seed(rank))
    root(inputs).pow(2).sum().backward()
    # the module the strategy wrapped, as the Lightning module sees it (its parameters are the
    # rank's shards, `use_orig_params=True`), and the trainer parts `clip_gradients` reads
    net._trainer = SimpleNamespace(strategy=SimpleNamespace(model=root), precision_plugin=None)

    def global_norm() -> float:
        squares = sum(p.grad.pow(2).sum() for p in net.parameters() if p.grad is not None)
        dist.all_reduce(squares)
        return float(squares.sqrt())

    before = global_norm()
    clip_gradients(net, torch.optim.SGD(net.parameters(), lr=0.1), CLIP)
    return {"before": before, "after": global_norm()}


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    result = {"vote": _preemption_vote(rank), "fsdp1": _fsdp1_clip(rank)}
    dist.destroy_process_group()
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("ranks")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    mp.spawn(_worker, args=(port, str(out)), nprocs=2)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_a_signal_on_one_rank_stops_both_after_the_same_step(ranks: list[dict]) -> None:
    """The vote started before step 2 (carrying rank 1's signal) is read before step 3: both
    ranks checkpoint and stop there, one step later than a lone process would."""
    zero, one = (r["vote"] for r in ranks)
    assert zero["stopped"]["step"] == one["stopped"]["step"] == SIGNAL_ON_RANK_1_AT + 1
    assert zero["saved"] == one["saved"] == [SIGNAL_ON_RANK_1_AT + 1]
    assert "peer rank" in zero["stopped"]["why"] and "SIGTERM" in one["stopped"]["why"]


def test_fsdp1_clips_every_shard_by_the_global_norm(ranks: list[dict]) -> None:
    """Issue 20, item 6: clipping each rank's shard by its own norm leaves a global norm above
    the clip (about √2 × it here) and scales the ranks differently."""
    for rank in ranks:
        assert rank["fsdp1"]["before"] > 2 * CLIP
        assert rank["fsdp1"]["after"] == pytest.approx(CLIP, rel=1e-4)
