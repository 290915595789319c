"""Tasks, registered by name: `task: classification | regression | lm | image_classification` (or
`auto`) in the config.

Each task is a package exposing `TASK` (see tasks/base.py for the interface). Packages are
imported only when a task is used, and import no torch, so a task's config rules run before
torch is imported.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from trainpipe.errors import ConfigError
from trainpipe.tasks.base import Objective, Predictor, Prepared, Task

__all__ = [
    "TASKS",
    "Objective",
    "Predictor",
    "Prepared",
    "Task",
    "check_config",
    "get_task",
    "model_task",
    "resolve_task",
]

log = logging.getLogger(__name__)

TASKS = {
    "classification": "trainpipe.tasks.classification",
    "regression": "trainpipe.tasks.regression",
    "lm": "trainpipe.tasks.lm",
    "image_classification": "trainpipe.tasks.images",
}
# the task `task: auto` picks for a kind of data that only one task learns from; a table's task
# depends on its target (resolve_task)
KIND_TASKS = {"text": "lm", "image": "image_classification"}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError("task", f"unknown task {name!r} (one of: auto, {', '.join(TASKS)})")
    return importlib.import_module(TASKS[name]).TASK


def config_task(conf: dict[str, Any]) -> Task:
    """The task whose config rules apply, known before any data is read: the configured one, or
    the one `auto` infers. Where inference needs the data (a table's target: classification or
    regression), the table tasks share their rules, so either answers."""
    name = conf["task"]
    if name != "auto":
        return get_task(name)
    return get_task(KIND_TASKS.get(conf["data"]["kind"], "classification"))


def check_config(conf: dict[str, Any]) -> None:
    """The task's own rules on a validated, resolved training config (ConfigError); no torch."""
    config_task(conf).validate(conf)


def model_task(model: dict[str, Any]) -> Task | None:
    """The first task that trains the model a `model` config section builds (its `_target_`)."""
    for name in TASKS:
        task = get_task(name)
        if model.get("_target_") in task.model_builders:
            return task
    return None


def resolve_task(conf: dict[str, Any]) -> tuple[Task, str]:
    """The job's task and why: `task` as configured, or inferred from the data when `auto`.

    Text data → lm, images → image_classification (KIND_TASKS). A table → regression if its target is a float column with non-integer values
    or many distinct values, else classification (integers and strings are class labels).
    """
    name = conf["task"]
    if name != "auto":
        return get_task(name), "set in the config"
    data_kind = conf["data"]["kind"]
    if data_kind in KIND_TASKS:
        return get_task(KIND_TASKS[data_kind]), f"inferred: {data_kind} data"
    from trainpipe.data.tables import target_kind

    kind = target_kind(conf["data"])
    target = conf["data"]["target"]
    if kind == "values":
        return get_task("regression"), f"inferred: target {target!r} holds numeric values"
    return get_task("classification"), f"inferred: target {target!r} holds class labels"
