"""trainer=fsdp2 through the real CLI under torchrun, on CPU processes (gloo): FSDP2 sharding by the
module, sharded checkpoints published atomically, and a job saved by 2 processes resuming on 1 and
then on 2 again, into the same MLflow run, with the registered weights (gathered from 2 ranks)
equal to the best checkpoint read whole in one process.

Exercised here: Lightning's ModelParallelStrategy (our FSDP2Strategy) with `fully_shard` per block
on CPU tensors, DCP save/load and resharding 2 → 1 → 2, the kill-in-save drill, the gathered
weights of a sharded model in its package. Not exercised (GPU only, scripts/gpu_check.sh): NCCL,
bf16 parameters / fp32 reduction (CPU runs 32-true), torch.compile with FSDP2.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import torchrun
from tests.integration.mlflow_store import client_for, metric_steps, runs_of
from trainpipe.runtime.checkpoint_io import load_checkpoint_file

pytestmark = pytest.mark.slow

JOB = [
    "experiment=stdlib_gpt",
    "trainer=fsdp2",
    "trainer.accelerator=cpu",
    "trainer.precision=32-true",
    "data.max_bytes=300000",
    "data.batch_size=4",
    "model.n_layer=2",
    "model.n_head=2",
    "model.d_model=32",
    "model.seq_len=32",
    "model.scheduler.warmup_steps=2",
    "checkpoint.every_n_steps=4",
    "trainer.log_every_n_steps=2",
    "trainer.enable_progress_bar=false",
    "run_name=job",
    # the same command every time: a changed config would change the MLflow run's params
    "trainer.max_steps=12",
    "trainer.val_check_interval=6",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
]
CHECKPOINTS = Path("outputs/train/stdlib_gpt/job/checkpoints")


def shard_files(checkpoint: Path) -> list[str]:
    return sorted(p.name for p in checkpoint.glob("*.distcp"))


def test_sharded_job_resumes_at_another_world_size(workdir: Path) -> None:
    checkpoints = workdir / CHECKPOINTS
    # 2 processes, killed inside their third save (step 4, best of step 6, step 8): the step-8
    # shards are written but not published
    killed = torchrun(
        ["train", *JOB], workdir, 2, TRAINPIPE_INJECT_FAULT="kill_in_checkpoint_save@3"
    )
    assert killed.returncode != 0
    assert sorted(p.name for p in checkpoints.glob("step-*.ckpt")) == ["step-00000004.ckpt"]
    assert shard_files(checkpoints / "step-00000004.ckpt") == ["__0_0.distcp", "__1_0.distcp"]
    assert list(checkpoints.glob(".step-00000008.ckpt.tmp*"))  # the unpublished staging dir

    # 1 process resumes the 2-process shards, and is killed after its step-8 checkpoint
    shrunk = torchrun(["train", *JOB], workdir, 1, TRAINPIPE_INJECT_FAULT="kill@10")
    assert shrunk.returncode != 0
    assert "step-00000004.ckpt" in shrunk.stderr + shrunk.stdout  # "resuming from …"
    assert shard_files(checkpoints / "step-00000008.ckpt") == ["__0_0.distcp"]

    # 2 processes resume the 1-process shards and finish: one run, each step logged once
    grown = torchrun(["train", *JOB], workdir, 2)
    assert grown.returncode == 0, grown.stderr[-3000:]
    assert shard_files(checkpoints / "step-00000012.ckpt") == ["__0_0.distcp", "__1_0.distcp"]
    assert not list(checkpoints.glob(".*.tmp*"))  # the killed save's shards are cleaned up
    (run,) = runs_of(workdir, "stdlib_gpt")
    assert run.info.status == "FINISHED"
    steps = [step for step, _ in metric_steps(workdir, run.info.run_id, "train/loss")]
    assert steps == list(range(1, 12, 2))
    versions = client_for(workdir).search_model_versions("name='stdlib_gpt'")
    assert [str(v.version) for v in versions] == ["1"]
    assert_package_holds_the_best_checkpoint(workdir)


def assert_package_holds_the_best_checkpoint(workdir: Path) -> None:
    from safetensors.torch import load_file

    from trainpipe.runtime.job_state import JobState

    job_dir = workdir / CHECKPOINTS.parent
    best = Path(JobState.load(job_dir).summary["best checkpoint"].split(" (epoch")[0])
    assert best.is_dir()  # a sharded checkpoint, read here whole by one process
    saved = load_checkpoint_file(best)["state_dict"]
    packaged = load_file(str(job_dir / "model" / "model.safetensors"))
    assert packaged
    for name, tensor in packaged.items():
        assert torch.equal(tensor, saved[f"model.{name}"]), name
