"""Kill a job anywhere; the same command resumes it into the same MLflow run, bit for bit."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from tests.conftest import (
    run_cli,
    start_cli,
    torchrun,
    wait_for_checkpoint,
    with_empty_store,
)
from tests.integration.mlflow_store import metric_steps, runs_of

pytestmark = pytest.mark.slow

# 23 batches per epoch, 3 epochs = 69 steps; a resume checkpoint every 5 steps and at epoch ends
JOB = [
    "trainer.max_epochs=3",
    "checkpoint.every_n_steps=5",
    "trainer.deterministic=true",
    "trainer.log_every_n_steps=1",
]
JOB += [
    "registry.register=false",
    "test_after_fit=false",
    "trainer.enable_progress_bar=false",
    "run_name=job",
]
JOB_DIR = Path("outputs/train/digits/job")


def final_state(workdir: Path) -> dict:
    newest = max((workdir / JOB_DIR / "checkpoints").glob("step-*.ckpt"))
    assert newest.name == "step-00000069.ckpt"
    return torch.load(newest, weights_only=True)


def histories(workdir: Path) -> dict[str, list[tuple[int, float]]]:
    (run,) = runs_of(workdir, "digits")
    assert run.info.status == "FINISHED"
    return {
        key: metric_steps(workdir, run.info.run_id, key)
        for key in ("train/loss", "val/acc", "val/loss", "val/f1")
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, store_template: Path) -> tuple[dict, dict]:
    """The uninterrupted job: its final weights and metric histories."""
    workdir = with_empty_store(tmp_path_factory.mktemp("reference"), store_template)
    result = run_cli(["train", *JOB], cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return final_state(workdir), histories(workdir)


def assert_same_as_reference(workdir: Path, reference: tuple[dict, dict]) -> None:
    weights, history = reference
    state = final_state(workdir)
    assert state["global_step"] == weights["global_step"]
    for name, tensor in weights["state_dict"].items():
        assert torch.equal(tensor, state["state_dict"][name]), name
    resumed = histories(workdir)  # also: exactly one MLflow run
    assert len(history["train/loss"]) == 69
    assert resumed == history  # every step once, same values


@pytest.mark.parametrize(
    ("fault", "workers"),
    [
        ("kill@3", 0),  # before the first checkpoint
        ("kill@12", 0),  # mid-epoch, after the step-10 checkpoint
        # the same in DataLoader worker processes, which are handed batches ahead of use
        ("kill@12", 2),
        ("kill_at_epoch_end@0", 0),  # after epoch 0's validation, before its checkpoint
        ("kill_in_checkpoint_save@2", 0),  # inside the step-10 save: temp file written, not renamed
    ],
)
def test_killed_job_resumes_bit_exactly_into_the_same_run(
    workdir: Path, reference: tuple[dict, dict], fault: str, workers: int
) -> None:
    job = [*JOB, f"data.num_workers={workers}"]
    killed = run_cli(["train", *job], cwd=workdir, TRAINPIPE_INJECT_FAULT=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    if fault.startswith("kill_in_checkpoint_save"):
        names = sorted(p.name for p in (workdir / JOB_DIR / "checkpoints").iterdir())
        assert "step-00000005.ckpt" in names and "step-00000010.ckpt" not in names
        assert any(n.startswith(".step-00000010.ckpt.tmp") for n in names)  # the half-done save
    resumed = run_cli(["train", *job], cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_as_reference(workdir, reference)


def test_a_corrupt_newest_checkpoint_is_skipped(
    workdir: Path, reference: tuple[dict, dict]
) -> None:
    killed = run_cli(["train", *JOB], cwd=workdir, TRAINPIPE_INJECT_FAULT="kill@12")
    assert killed.returncode == -signal.SIGKILL
    newest = workdir / JOB_DIR / "checkpoints" / "step-00000010.ckpt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated
    resumed = run_cli(["train", *JOB], cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (
        "skipping checkpoint" in resumed.stderr + resumed.stdout
        and "step-00000010.ckpt" in resumed.stderr + resumed.stdout
    )
    assert (
        "resuming from" in resumed.stderr + resumed.stdout
        and "step-00000005.ckpt" in resumed.stderr + resumed.stdout
    )
    assert_same_as_reference(workdir, reference)


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGTERM, 75), (signal.SIGINT, 130)])
def test_a_stop_signal_checkpoints_at_a_step_boundary_and_the_rerun_finishes_clean(
    workdir: Path, reference: tuple[dict, dict], stop: signal.Signals, code: int
) -> None:
    """SIGTERM (preemption) and SIGINT (Ctrl-C) both finish the step, checkpoint and stop."""
    job = start_cli(["train", *JOB], cwd=workdir)
    wait_for_checkpoint(workdir / JOB_DIR / "checkpoints", 5, job)
    job.send_signal(stop)
    finished = job.result(timeout=120)
    output = finished.stdout + finished.stderr
    assert finished.returncode == code, output[-3000:]
    steps = sorted(
        int(p.stem.split("-")[1]) for p in (workdir / JOB_DIR / "checkpoints").glob("step-*.ckpt")
    )
    stopped_at = steps[-1]
    assert 5 <= stopped_at < 69
    assert f"stopped after step {stopped_at}" in output
    assert "graceful shutdown" not in output  # Lightning's own Ctrl-C handling is not involved
    (run,) = runs_of(workdir, "digits")
    assert run.info.status == "KILLED"
    assert f"{stop.name} at step {stopped_at}" in run.data.tags["trainpipe.preempted"]
    state = torch.load(
        workdir / JOB_DIR / "checkpoints" / f"step-{stopped_at:08d}.ckpt", weights_only=True
    )
    assert state["global_step"] == stopped_at
    resumed = run_cli(["train", *JOB], cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_as_reference(workdir, reference)
    (run,) = runs_of(workdir, "digits")
    assert not {"trainpipe.preempted", "trainpipe.failure_reason"} & set(run.data.tags)


def test_nan_stops_the_job_naming_the_step_and_keeps_the_last_good_checkpoint(
    workdir: Path,
) -> None:
    result = run_cli(["train", *JOB], cwd=workdir, TRAINPIPE_INJECT_FAULT="nan@7")
    assert result.returncode == 1
    assert "non-finite train/loss=nan at step 7" in result.stderr
    assert "Traceback" not in result.stderr
    log = (workdir / JOB_DIR / "train.log").read_text()  # the whole story is in the log file
    assert "job ended (failed): non-finite train/loss=nan at step 7" in log
    assert "Traceback (most recent call last)" in log
    (run,) = runs_of(workdir, "digits")
    assert run.info.status == "FAILED" and "step 7" in run.data.tags["trainpipe.failure_reason"]
    names = sorted(p.name for p in (workdir / JOB_DIR / "checkpoints").glob("step-*.ckpt"))
    assert names == ["step-00000005.ckpt"]
    state = torch.load(workdir / JOB_DIR / "checkpoints" / names[0], weights_only=True)
    assert all(
        torch.isfinite(t).all() for t in state["state_dict"].values() if t.is_floating_point()
    )


def test_nan_batch_can_be_skipped(workdir: Path) -> None:
    result = run_cli(
        ["train", *JOB, "divergence.max_skipped_batches=1"],
        cwd=workdir,
        TRAINPIPE_INJECT_FAULT="nan@7",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped the batch of step 7" in result.stdout + result.stderr
    (run,) = runs_of(workdir, "digits")
    assert run.info.status == "FINISHED"


def test_resume_never_starts_a_new_run_and_keeps_the_old_attempt(workdir: Path) -> None:
    short = [*JOB, "trainer.max_epochs=1"]
    assert run_cli(["train", *short], cwd=workdir).returncode == 0
    again = run_cli(["train", *short], cwd=workdir)
    assert "already complete" in again.stdout
    fresh = run_cli(["train", *short, "resume=never"], cwd=workdir)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert len(runs_of(workdir, "digits")) == 2
    assert (workdir / JOB_DIR / "attempts" / "1" / "checkpoints").is_dir()
    bad = run_cli(["train", *short, "resume=nowhere.ckpt"], cwd=workdir)
    assert bad.returncode == 2 and "resume: no checkpoint file at 'nowhere.ckpt'" in bad.stderr


def test_torchrun_job_killed_and_resumed_equals_the_uninterrupted_one(tmp_path: Path) -> None:
    ddp = [
        "trainer=ddp_cpu",
        "trainer.max_epochs=2",
        *[a for a in JOB if not a.startswith("trainer.max_epochs")],
    ]

    (tmp_path / "ref").mkdir()
    (tmp_path / "killed").mkdir()
    assert torchrun(["train", *ddp], tmp_path / "ref").returncode == 0
    killed = torchrun(["train", *ddp], tmp_path / "killed", TRAINPIPE_INJECT_FAULT="kill@17")
    assert killed.returncode != 0
    resumed = torchrun(["train", *ddp], tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ckpts = [
        max((tmp_path / d / JOB_DIR / "checkpoints").glob("step-*.ckpt")) for d in ("ref", "killed")
    ]
    a, b = (torch.load(p, weights_only=True) for p in ckpts)
    assert a["global_step"] == b["global_step"] == 24  # 12 steps per epoch per rank, 2 epochs
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), name
    assert metric_steps(
        tmp_path / "ref", runs_of(tmp_path / "ref", "digits")[0].info.run_id, "train/loss"
    ) == metric_steps(
        tmp_path / "killed", runs_of(tmp_path / "killed", "digits")[0].info.run_id, "train/loss"
    )
    assert len(runs_of(tmp_path / "killed", "digits")) == 1
