"""Shared test helpers: offline env, a temp working dir per test, and running the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.warm_cli import WarmProcess, WarmServer

OFFLINE_ENV = {
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
os.environ.update(OFFLINE_ENV)
# set by `trainpipe` itself before the libraries are imported (trainpipe/console.py)
QUIET_ENV = (
    "HF_DATASETS_DISABLE_PROGRESS_BARS",
    "MLFLOW_LOGGING_LEVEL",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
)
REPO = Path(__file__).resolve().parents[1]
# a real but short training: one epoch of 5 batches (what debug=fast runs, but registered)
TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=5",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
]


def cli_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_TRACKING", "TRAINPIPE_", "RANK", "LOCAL_RANK", "WORLD_SIZE"))
    }
    env.update(OFFLINE_ENV)
    env.update(extra)
    return env


_warm: dict[int, WarmServer] = {}


def warm_server() -> WarmServer:
    """This test process's warm CLI server (tests/warm_cli.py), started on first use."""
    if os.getpid() not in _warm:
        import atexit
        import tempfile

        from trainpipe.console import quiet_environment

        quiet_environment()  # what `trainpipe` sets before importing the libraries
        scratch = Path(tempfile.mkdtemp(prefix="trainpipe-warm-"))
        server = WarmServer(cli_env(**{k: os.environ[k] for k in QUIET_ENV}), scratch)
        atexit.register(server.close)
        _warm[os.getpid()] = server
    return _warm[os.getpid()]


def run_cli(
    args: list[str], cwd: Path, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess:
    """Run `trainpipe ARGS` in `cwd` like a user would, in a process of its own (forked from a
    warm interpreter: tests/warm_cli.py); returns the finished process."""
    return warm_server().start(list(args), cwd, cli_env(**env)).result(timeout)


def start_cli(args: list[str], cwd: Path, **env: str) -> WarmProcess:
    """Start `trainpipe ARGS` in `cwd` and return at once (poll, send_signal, wait, result)."""
    return warm_server().start(list(args), cwd, cli_env(**env))


def run_fresh(
    args: list[str], cwd: Path, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess:
    """`python -m trainpipe ARGS` in a new interpreter: for what happens at import and start-up."""
    return subprocess.run(
        [sys.executable, "-m", "trainpipe", *args],
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def torchrun(args: list[str], cwd: Path, nproc: int = 2, **env: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=N -m trainpipe ARGS` in `cwd`: real worker processes
    (gloo on the CPU), each a fresh interpreter."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc_per_node={nproc}", "-m", "trainpipe", *args]
    return subprocess.run(
        command, cwd=cwd, env=cli_env(**env), capture_output=True, text=True, timeout=600
    )


def run_without_pickle(script: str, cwd: Path) -> dict[str, Any]:
    """Run a Python `script` in `cwd` with MLflow's unpickling refused; returns the JSON object it
    prints on its last line."""
    import json

    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=cli_env(MLFLOW_ALLOW_PICKLE_DESERIALIZATION="false"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty sqlite MLflow store, made once per test worker. Creating a store runs MLflow's
    schema migrations (~1.7 s of CPU), which every test that tracks would otherwise pay again;
    a copy of an empty migrated store holds what a first run would have created, except that its
    Default experiment points at the template's directory (trainpipe never logs to it)."""
    import mlflow

    path = tmp_path_factory.mktemp("store-template") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def with_empty_store(directory: Path, template: Path) -> Path:
    """`directory`, holding an empty MLflow store as mlflow.db (the CLI's default store)."""
    shutil.copyfile(template, directory / "mlflow.db")
    return directory


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_template: Path) -> Path:
    """The directory the test runs in: its own outputs/ and caches, an empty mlflow.db."""
    monkeypatch.chdir(tmp_path)
    return with_empty_store(tmp_path, store_template)


@pytest.fixture
def empty_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory the test runs in: for tests of what a command writes (or must not)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_csv(path: Path, rows: int = 240, seed: int = 0, classes: int = 3) -> Path:
    """A small, learnable CSV: four numeric features, a string label that depends on them."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(classes, 4))
    label = rng.integers(0, classes, size=rows)
    x = centers[label] + rng.normal(size=(rows, 4))
    lines = ["a,b,c,d,species"] + [
        ",".join(f"{v:.4f}" for v in x[i]) + f",kind{label[i]}" for i in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def mixed_table(rows: int = 400, seed: int = 0) -> Any:
    """A table as it comes out of a company's system (a pandas DataFrame): an id column, a
    category with gaps, a number with gaps, a boolean, dates as ISO strings with gaps, a small
    integer code; the label `plan` depends on the category, the number and the month."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    island = rng.choice(["Biscoe", "Dream", "Torgersen"], size=rows)
    size = rng.normal(size=rows)
    month = rng.integers(1, 13, size=rows)
    score = (island == "Dream") * 2.0 + size + (month >= 7) * 1.5 - 1.0
    label = np.where(score > 1.0, "gold", np.where(score > -0.5, "silver", "basic"))
    frame = pd.DataFrame(
        {
            "customer": [f"c{i:05d}" for i in range(rows)],
            "island": island.astype(object),
            "size": size,
            "active": rng.random(rows) < 0.5,
            "signup": [
                f"2023-{m:02d}-{d:02d}"
                for m, d in zip(month, rng.integers(1, 28, rows), strict=True)
            ],
            "code": rng.integers(0, 4, size=rows),
            "plan": label,
        }
    )
    gaps = rng.random((rows, 3)) < 0.08
    frame.loc[gaps[:, 0], "island"] = None
    frame.loc[gaps[:, 1], "size"] = np.nan
    frame.loc[gaps[:, 2], "signup"] = None
    return frame


def wait_for_checkpoint(
    checkpoints: Path, step: int, job: subprocess.Popen | WarmProcess, timeout_s: float = 180
) -> None:
    """Until a resume checkpoint of `step` or later exists (older ones get pruned) or the job ends."""
    import time

    deadline = time.monotonic() + timeout_s
    while job.poll() is None and time.monotonic() < deadline:
        if any(int(p.stem.split("-")[1]) >= step for p in checkpoints.glob("step-*.ckpt")):
            return
        time.sleep(0.05)
