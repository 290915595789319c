"""Reading a test's sqlite MLflow store back (the way a user would with MlflowClient)."""

from __future__ import annotations

from pathlib import Path

import mlflow


def client_for(workdir: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")


def runs_of(workdir: Path, experiment: str) -> list:
    client = client_for(workdir)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def metric_steps(workdir: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client_for(workdir).get_metric_history(run_id, key))
