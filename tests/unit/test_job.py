"""The job's failure policy, against a real sqlite MLflow store: each way a job can end leaves the
MLflow run, job.json and the exit code the user is promised (runtime/failures.py)."""

from __future__ import annotations

import signal
from pathlib import Path

import mlflow
import optuna
import pytest

from trainpipe.errors import ConfigError, JobFailed
from trainpipe.runtime.failures import Interrupted, Preempted, classify
from trainpipe.runtime.job import Job
from trainpipe.runtime.job_state import JobState
from trainpipe.runtime.signals import StopSignals
from trainpipe.tracking import MLflowTracker, NullTracker


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for the module (creating one runs MLflow's migrations: ~1.5 s)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db"


def tracked_job(tmp_path: Path, store: str) -> Job:
    tracker = MLflowTracker(store, "jobs", drain_timeout_s=5)
    return Job(tmp_path / "out", tracker, StopSignals(("SIGTERM",)))


def run_status(job: Job) -> tuple[str, dict[str, str]]:
    run = mlflow.MlflowClient(job.tracker.tracking_uri).get_run(job.tracker.run_id)
    return run.info.status, run.data.tags


@pytest.mark.parametrize(
    ("error", "status", "job_status", "exit_code", "tag"),
    [
        (Preempted("SIGTERM", 12), "KILLED", "preempted", 75, "trainpipe.preempted"),
        (Preempted("SIGINT", 12), "KILLED", "interrupted", 130, "trainpipe.preempted"),
        (Interrupted("SIGINT"), "KILLED", "interrupted", 130, None),
        (KeyboardInterrupt(), "KILLED", "interrupted", 130, None),
        (optuna.TrialPruned("weak trial"), "KILLED", "pruned", 0, "trainpipe.pruned"),
        (JobFailed("non-finite train/loss at step 7"), "FAILED", "failed", 1, None),
        (RuntimeError("a bug"), "FAILED", "error", 1, None),
    ],
)
def test_each_way_a_job_ends_is_recorded_once_and_re_raised(
    tmp_path: Path,
    store: str,
    error: BaseException,
    status: str,
    job_status: str,
    exit_code: int,
    tag: str | None,
) -> None:
    job = tracked_job(tmp_path, store)
    with pytest.raises(type(error)), job:
        job.start("run-1", {"origin": "test"}, {"lr": "0.1"}, "lr: 0.1\n")
        raise error
    assert run_status(job)[0] == status
    tags = run_status(job)[1]
    assert tags["trainpipe.failure_reason"]
    assert tag is None or tag in tags
    assert JobState.load(job.output_dir).status == job_status
    assert classify(error).exit_code == exit_code


def test_a_complete_job_is_finished_and_a_rerun_sees_it(tmp_path: Path, store: str) -> None:
    job = tracked_job(tmp_path, store)
    with job:
        run_id = job.start("run-1", {}, {"lr": "0.1"}, "lr: 0.1\n")
        assert job.finish() == 0
        job.complete({"objective": 0.9})
    assert run_status(job)[0] == "FINISHED"
    again = Job(job.output_dir, NullTracker(), StopSignals(("SIGTERM",)))
    assert again.is_complete and again.state.run_id == run_id
    assert again.state.summary == {"objective": 0.9}
    assert (job.output_dir / "config.yaml").read_text() == "lr: 0.1\n"


def test_an_error_before_the_run_starts_records_nothing(tmp_path: Path, store: str) -> None:
    job = tracked_job(tmp_path, store)
    with pytest.raises(ConfigError), job:
        raise ConfigError("model.optimizer.momentum", "unknown argument")
    assert not (job.output_dir / "job.json").exists()
    assert classify(ConfigError("k", "m")).exit_code == 2


def test_a_stop_signal_outside_training_interrupts_at_once_and_handlers_are_restored(
    tmp_path: Path,
) -> None:
    before = signal.getsignal(signal.SIGTERM)
    job = Job(tmp_path / "out", NullTracker(), StopSignals(("SIGTERM",)))
    with pytest.raises(Interrupted, match="SIGTERM"), job:
        signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before
    deferred = StopSignals(("SIGTERM",))
    deferred.install()
    deferred.deferred = True  # inside the training loop: only recorded, the loop checkpoints
    signal.raise_signal(signal.SIGTERM)
    deferred.restore()
    assert deferred.received == "SIGTERM"
