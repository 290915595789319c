"""A real --multirun through Hydra's submitit launcher (local executor): the same launcher code path
as `hydra/launcher=slurm`, each job in its own submitit-started process, no cluster needed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_two_job_sweep_runs_through_submitit_local(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_cli(
        [
            "train",
            "--multirun",
            "hydra/launcher=local",
            "debug=fast",
            "logger=none",
            "registry.register=false",
            "model.optimizer.lr=0.001,0.002",
        ],
        cwd=tmp_path,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    assert "Submitit 'local' sweep output dir" in result.stdout + result.stderr

    # outputs/multirun/<experiment>/<sweep dir>/<job num>/
    sweep_dirs = sorted((tmp_path / "outputs" / "multirun" / "digits").iterdir())
    assert len(sweep_dirs) == 1, sweep_dirs
    sweep = sweep_dirs[0]
    for num, lr in ((0, "0.001"), (1, "0.002")):
        job = json.loads((sweep / str(num) / "job.json").read_text())
        assert job["status"] == "complete", job
        assert (
            f"model.optimizer.lr={lr}"
            in (sweep / str(num) / ".hydra" / "overrides.yaml").read_text()
        )

    # submitit really ran them: one submitit job folder per job, each with its result and logs
    submitted = [d for d in (sweep / ".submitit").iterdir() if d.is_dir() and any(d.iterdir())]
    assert len(submitted) == 2, sorted(p.name for p in (sweep / ".submitit").iterdir())
    for folder in submitted:
        assert list(folder.glob("*_result.pkl")), sorted(p.name for p in folder.iterdir())
        assert "Job completed successfully" in "".join(
            p.read_text() for p in folder.glob("*_log.*")
        )
    assert elapsed < 180, f"took {elapsed:.0f} s"
