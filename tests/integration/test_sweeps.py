"""Sweeps map onto MLflow: one parent run, one nested child per job; Optuna HPO resumes and prunes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import cli_env, run_cli
from tests.integration.mlflow_store import client_for, runs_of

pytestmark = pytest.mark.slow

FAST = ["debug=fast", "trainer.enable_progress_bar=false", "registry.register=false"]


def parent_and_children(workdir: Path, experiment: str = "digits") -> tuple[object, list]:
    runs = runs_of(workdir, experiment)
    parents = [r for r in runs if r.data.tags.get("trainpipe.sweep") == "parent"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    (parent,) = parents
    children = [r for r in runs if r is not parent]
    assert all(c.data.tags.get("mlflow.parentRunId") == parent.info.run_id for c in children)
    return parent, children


def check_grid(workdir: Path, result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert "database is locked" not in result.stdout + result.stderr
    parent, children = parent_and_children(workdir)
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    combos = {
        c.data.tags["trainpipe.sweep.overrides"].split(" ")[0]
        + " "
        + c.data.params["model.optimizer.lr"]
        for c in children
    }
    assert combos == {"model=mlp 0.001", "model=mlp 0.003", "model=cnn 0.001", "model=cnn 0.003"}
    objectives = [float(c.data.tags["trainpipe.objective"]) for c in children]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best/val/acc"] == pytest.approx(max(objectives))
    assert "model=mlp,cnn" in parent.data.params["sweep.overrides"]
    assert parent.data.tags["best.run_id"] in {c.info.run_id for c in children}


def test_grid_sweep_is_a_parent_with_four_children_and_registers_its_best_once(
    workdir: Path,
) -> None:
    registered = [*FAST[:-1], "registry.register=true"]
    result = run_cli(
        ["train", "--multirun", "model=mlp,cnn", "model.optimizer.lr=0.001,0.003", *registered],
        cwd=workdir,
    )
    check_grid(workdir, result)
    parent, children = parent_and_children(workdir)
    assert parent.data.params["sweep.optimized_metric"] == "val/acc"  # resolved, not `auto`
    best = parent.data.tags["best.run_id"]
    client = client_for(workdir)
    (version,) = client.search_model_versions("name='digits'")
    assert version.run_id == best
    assert client.get_model_version_by_alias("digits", "challenger").version == version.version
    assert parent.data.tags["best.model"] == "models:/digits/1"
    # the table of jobs, then the best one
    for job in range(4):
        assert re.search(rf"│ {job}\s+│ model=(mlp|cnn) model.optimizer.lr=0.00[13]", result.stdout)
    best_job = next(c for c in children if c.info.run_id == best)
    number = Path(best_job.data.tags["trainpipe.paths.output_dir"]).name
    assert f"best job {number}: val/acc " in result.stdout
    assert "registered as models:/digits/1" in result.stdout, result.stdout


def test_parallel_joblib_sweep_loses_no_run(workdir: Path) -> None:
    args = [
        "train",
        "--multirun",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "model=mlp,cnn",
        "model.optimizer.lr=0.001,0.003",
    ]
    check_grid(workdir, run_cli([*args, *FAST], cwd=workdir))


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(workdir: Path) -> None:
    # Adadelta has no `lr_decay` argument: that job fails inside training, the Adagrad one trains
    optimizers = "model.optimizer._target_=torch.optim.Adagrad,torch.optim.Adadelta"
    result = run_cli(
        ["train", "--multirun", optimizers, "+model.optimizer.lr_decay=0.0", *FAST], cwd=workdir
    )
    assert result.returncode == 0, result.stderr[-3000:]
    parent, children = parent_and_children(workdir)
    statuses = sorted(c.info.status for c in children)
    assert statuses == ["FAILED", "FINISHED"]
    failed = next(c for c in children if c.info.status == "FAILED")
    assert "lr_decay" in failed.data.tags["trainpipe.failure_reason"]
    assert parent.data.metrics["sweep/failed_jobs"] == 1


# A user's own search space, next to the shipped one (--config-dir): a sensible and a hopeless
# learning rate, so the median pruner has something to prune.
TINY_SEARCH = """# @package _global_
defaults:
  - override /hydra/sweeper: trainpipe_optuna
registry:
  register: false
hydra:
  sweeper:
    direction: maximize
    n_trials: 4
    seed: 6
    pruner: {type: median, n_startup_trials: 1, n_warmup_steps: 0}
    params:
      model.optimizer.lr: choice(0.003, 0.0000001)
"""
OPTUNA = ["--config-dir", "my_configs", "hparams_search=tiny"]
OPTUNA += ["trainer.max_epochs=3", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2"]
OPTUNA += ["trainer.enable_progress_bar=false", "callbacks.early_stopping.patience=100"]


def study_trials(workdir: Path) -> list:
    import optuna

    (storage,) = (workdir / "outputs" / "multirun" / "digits").glob("sweep-*/optuna.db")
    return optuna.load_study(study_name="train", storage=f"sqlite:///{storage}").trials


def test_optuna_sweep_resumes_after_a_kill_and_marks_pruned_trials(workdir: Path) -> None:
    (workdir / "my_configs" / "hparams_search").mkdir(parents=True)
    (workdir / "my_configs" / "hparams_search" / "tiny.yaml").write_text(TINY_SEARCH)
    command = [sys.executable, "-m", "trainpipe", "train", "--multirun", *OPTUNA]
    first = subprocess.Popen(
        command,
        cwd=workdir,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and first.poll() is None:
            done = [
                s
                for s in (workdir / "outputs" / "multirun").glob("*/*/*/job.json")
                if '"complete"' in s.read_text()
            ]
            pruned_or_done = (
                len(done)
                + len(list((workdir / "outputs" / "multirun").glob("*/*/*/train.log")))
                - len(done)
            )
            if len(done) >= 2 or pruned_or_done >= 3:
                break
            time.sleep(0.5)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL, "the first sweep should have been killed mid-way"
    finished_before = [t for t in study_trials(workdir) if t.state.is_finished()]
    assert 2 <= len(finished_before) < 4, "the kill should land mid-sweep"

    second = run_cli(["train", "--multirun", *OPTUNA], cwd=workdir)
    assert second.returncode == 0, second.stderr[-3000:]
    trials = study_trials(workdir)
    counted = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(counted) == 4  # the first run's finished trials were kept, only the rest were run
    assert [t.number for t in counted][: len(finished_before)] == [
        t.number for t in finished_before
    ]

    parent, children = parent_and_children(workdir)
    assert not [
        c for c in children if c.info.status == "RUNNING"
    ]  # the killed job's run was closed
    assert "best/val/acc" in parent.data.metrics
    assert parent.data.tags["best.model.optimizer.lr"] == "0.003"
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned, "the hopeless learning rate should have been pruned"
    pruned_runs = [c for c in children if c.data.tags.get("trainpipe.pruned") == "true"]
    assert len(pruned_runs) == len(pruned) and all(r.info.status == "KILLED" for r in pruned_runs)
