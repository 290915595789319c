"""Stamp every checkpoint with the job's identity: its MLflow run id (a resumed job continues the
same run), the fingerprint of its model/data config (a checkpoint of another config is refused
on resume) and the resolved config (`trainpipe eval` of a checkpoint scores it on its own data)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback

CONFIG_KEY = "trainpipe_config"


class RunIdentity(Callback):
    def __init__(
        self, run_id: str | None, config_fingerprint: str, config: dict[str, Any] | None = None
    ) -> None:
        self.run_id = run_id
        self.config_fingerprint = config_fingerprint
        self.config = config or {}

    def state_dict(self) -> dict[str, Any]:
        return {"mlflow_run_id": self.run_id, "config_fingerprint": self.config_fingerprint}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.run_id = state_dict.get("mlflow_run_id") or self.run_id

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = self.config
