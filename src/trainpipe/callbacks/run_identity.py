"""Stamp every checkpoint with the job's MLflow run id (a resumed job continues the same run)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback


class RunIdentity(Callback):
    def __init__(self, run_id: str | None, config_fingerprint: str) -> None:
        self.run_id = run_id
        self.config_fingerprint = config_fingerprint

    def state_dict(self) -> dict[str, Any]:
        return {"mlflow_run_id": self.run_id, "config_fingerprint": self.config_fingerprint}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.run_id = state_dict.get("mlflow_run_id") or self.run_id
