"""A tracking server outage never stops training and loses no metric (real `mlflow server`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import mlflow
import pytest

from tests.conftest import run_cli, start_cli, wait_for_checkpoint
from tests.integration.mlflow_server import MlflowServer

pytestmark = pytest.mark.slow

JOB = [
    "trainer.max_epochs=8",
    "checkpoint.every_n_steps=5",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
]
JOB += ["run_name=job", "trainer.deterministic=true"]
STEPS = 8 * 23
JOB_DIR = Path("outputs/train/digits/job")


@pytest.fixture
def server(tmp_path: Path):
    (tmp_path / "server").mkdir()
    server = MlflowServer(tmp_path / "server")
    yield server
    server.stop()


def assert_complete_run(uri: str) -> None:
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("digits")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    steps = Counter(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
    assert sorted(steps) == list(range(STEPS)) and set(steps.values()) == {
        1
    }  # every step exactly once
    assert "test/acc" in run.data.metrics and run.data.params["data.batch_size"] == "64"
    (version,) = client.search_model_versions("name='digits'")
    assert version.run_id == run.info.run_id


def test_server_stopped_mid_run_and_restarted(workdir: Path, server: MlflowServer) -> None:
    server.start()
    # drain_timeout_s: a slow machine may need a while to bring the server back up
    command = ["train", *JOB, "logger.drain_timeout_s=180"]
    job = start_cli(command, cwd=workdir, MLFLOW_TRACKING_URI=server.uri)  # output goes to files
    checkpoints = workdir / JOB_DIR / "checkpoints"
    wait_for_checkpoint(checkpoints, 10, job)
    server.stop()
    wait_for_checkpoint(checkpoints, 46, job)  # two more epochs trained with the server gone
    server.start()  # (if training already ended, the job is still retrying to send the rest)
    finished = job.result(timeout=400)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output[-3000:]
    assert "unavailable" in output  # the outage was noticed (and survived)
    assert_complete_run(server.uri)


def test_job_started_while_the_server_is_down_then_synced(
    workdir: Path, server: MlflowServer
) -> None:
    result = run_cli(
        ["train", *JOB, "logger.drain_timeout_s=1"], cwd=workdir, MLFLOW_TRACKING_URI=server.uri
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "waiting: trainpipe sync" in result.stdout  # the summary says what to do
    server.start()
    synced = run_cli(["sync", str(workdir / JOB_DIR)], cwd=workdir)
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert "up to date" in synced.stdout
    assert_complete_run(server.uri)
    again = run_cli(
        ["sync", str(workdir / JOB_DIR)], cwd=workdir
    )  # nothing left: nothing sent twice
    assert again.returncode == 0
    assert_complete_run(server.uri)
