"""Reading a test's sqlite MLflow store back (the way a user would with MlflowClient)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow


def client_for(workdir: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")


def runs_of(workdir: Path, experiment: str) -> list:
    client = client_for(workdir)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def metric_steps(workdir: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client_for(workdir).get_metric_history(run_id, key))


def load_pyfunc(workdir: Path, uri: str) -> Any:
    """The registered model as a user loads it, from `workdir`'s store (the process's tracking
    URI left as it was)."""
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    try:
        return mlflow.pyfunc.load_model(uri)
    finally:
        mlflow.set_tracking_uri(before)
