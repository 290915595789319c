"""What a job needs from experiment tracking. `trainpipe.tracking` implements it (MLflow, none).

Defined here, beside the job that uses it, so the runtime depends on an interface and not on
MLflow. Two concerns, each with "track nothing" bodies, so a backend overrides only what it does:
- `RunLog`: what a run logs — params, metrics, artifacts, inputs, tags, its status;
- `ModelRegistry`: what a registry does — register a model package as a new version, point an
  alias at a version (the job moves `challenger` to what it registered, docs/registry.md), find
  that version, tag versions.
`Tracker` is both: what the job, the stages and the pipeline are handed. A tracker that records
nothing (logger=none, and every rank but 0) subclasses it and overrides nothing it does not need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class RunLog(Protocol):
    # False: nothing is recorded, so nothing can be registered. A class attribute, so code that
    # holds only the config reads it from the class `logger._target_` names (config/identity.py)
    tracked: bool = False
    run_id: str | None = None
    tracking_uri: str | None = None
    experiment_name: str = "none"

    def start(self, run_name: str, tags: dict[str, str], journal_dir: Path) -> str | None:
        """Open (or reopen, on resume) the job's run; its id, if the store answered in time."""
        return None

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> int:
        """Close the run with an MLflow status; returns how many writes are still unsent."""
        return 0

    def log_params(self, params: dict[str, str]) -> None:
        return None

    def set_tags(self, tags: dict[str, str]) -> None:
        return None

    def delete_tags(self, keys: tuple[str, ...]) -> None:
        """Remove tags (those of an earlier attempt that no longer describe the run)."""
        return None

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        return None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        return None

    def log_input(self, dataset: dict[str, str], tags: dict[str, str]) -> None:
        """A dataset the run used (the run page's Datasets section)."""
        return None

    def metric_history(self) -> dict[str, list[tuple[int, float]]]:
        """The metric points recorded so far, by key: (step, value), sorted by step."""
        return {}

    def commit(self, up_to_step: int | None = None) -> None:
        """Make held metrics of steps <= `up_to_step` durable (called before each checkpoint)."""
        return None

    def lightning_logger(self) -> Any:
        """The Lightning logger that forwards `self.log(...)` here (None: no logger)."""
        return None

    def start_nested(self, run_name: str, tags: dict[str, str], journal_dir: Path) -> Tracker:
        """Open a run nested under this one and return its tracker, written through this
        tracker's own sending (one pipeline, one writer); `finish` on it closes the nested run.
        Default: a tracker that records nothing."""
        return Untracked()


class ModelRegistry(Protocol):
    def register_model(self, package: Path, model_name: str, version_tags: dict[str, str]) -> None:
        """Queue a model package's registration as a new version of `model_name`."""
        return None

    def set_alias(self, model_name: str, alias: str, version: str | None = None) -> None:
        """Queue moving `alias` of `model_name` to `version` (None: the version this run
        registered); the version that held it loses it."""
        return None

    def registered_version(self, model_name: str) -> str | None:
        """`models:/NAME/VERSION` of this run's registered version, once it is registered."""
        return None

    def set_version_tags(self, model_name: str, version: str, tags: dict[str, str]) -> None:
        """Tags on an existing registered version (e.g. the pipeline run that evaluated it)."""
        return None


class Tracker(RunLog, ModelRegistry, Protocol):
    """A run log and the registry it registers into: what a job is handed."""


class Untracked(Tracker):
    """What a backend that nests nothing hands out: the protocol's do-nothing bodies."""
