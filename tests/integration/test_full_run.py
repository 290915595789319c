"""The default run, all epochs, reaches the accuracy the README promises."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.mlflow_store import runs_of

pytestmark = pytest.mark.slow


def test_default_experiment_reaches_90_percent_test_accuracy(workdir: Path) -> None:
    result = run_cli(["train"], cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = runs_of(workdir, "digits")
    assert run.data.metrics["test/acc"] >= 0.9
