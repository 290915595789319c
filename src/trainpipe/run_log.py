"""What a training run logs about itself besides its metrics: the tracker (rank 0 only), its
params and tags, and its lineage (dataset, uncommitted changes, installed packages)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from trainpipe.fit_result import FitResult
from trainpipe.plan import JobPlan
from trainpipe.runtime.atomic import atomic_write_text
from trainpipe.runtime.ranks import is_rank_zero
from trainpipe.runtime.tracker import Tracker
from trainpipe.tracking.lineage import (
    COMMAND_ENV,
    RUN_TYPE_TAG,
    command_line,
    dataset_input,
    environment_tags,
    frozen_requirements,
    git_patch,
    git_tags,
    versions,
)
from trainpipe.tracking.params import flatten
from trainpipe.tracking.sweep import OVERRIDES_TAG, parent_run_id

log = logging.getLogger(__name__)

# Set by whatever starts a training job as one step of something larger (`trainpipe pipeline`):
# the run to nest the job's run under, and extra tags for it (a JSON object).
PARENT_RUN_ENV = "TRAINPIPE_PARENT_RUN_ID"
RUN_TAGS_ENV = "TRAINPIPE_RUN_TAGS"
LINEAGE_DIR = "lineage"  # <output dir>/lineage/: the files logged as the run's lineage artifacts


def make_tracker(cfg: DictConfig) -> Tracker:
    """The configured tracker on rank 0; one that records nothing on every other rank."""
    if not is_rank_zero():
        from trainpipe.tracking import NullTracker

        return NullTracker()
    return instantiate(cfg.logger, hold_metrics_until_commit=True)


def run_params(conf: dict[str, Any]) -> dict[str, str]:
    """The resolved config as params, minus what is not a hyperparameter: paths (logged as tags)
    and `_target_`/`_partial_` plumbing (the config.yaml artifact keeps all of it)."""
    return flatten(
        {k: v for k, v in conf.items() if k not in ("paths", "optuna_trial")}, drop_private=True
    )


def run_tags(plan: JobPlan) -> dict[str, str]:
    conf, prepared = plan.conf, plan.prepared
    tags = {
        RUN_TYPE_TAG: "train",
        "trainpipe.command": os.environ.get(COMMAND_ENV) or command_line(),
        "trainpipe.task": f"{plan.task.name} ({plan.task_reason})",
        "trainpipe.config_fingerprint": fingerprint_of(plan),
        "trainpipe.data.digest": prepared.digest,
        "trainpipe.data.split_digest": prepared.split_digest,
        "trainpipe.data.source": prepared.source,
        "trainpipe.data.rows": "/".join(str(n) for n in prepared.split_sizes().values()),
        **{f"trainpipe.paths.{k}": str(Path(v).resolve()) for k, v in conf["paths"].items()},
        "trainpipe.seed": str(conf["seed"]),
        **git_tags(),
        **versions(),
        **environment_tags(),
        **_parent_tags(),
        **_sweep_tags(),
    }
    return tags


def fingerprint_of(plan: JobPlan) -> str:
    """The training config's fingerprint, the plan's (run_name additionally hashes the data's
    content)."""
    return plan.fingerprint


def log_best(plan: JobPlan, tracker: Tracker, result: FitResult, step: int) -> None:
    """The best checkpoint's validation metrics as `best/val/*`, and the run's description (the
    UI's markdown note) saying which numbers are which: the run page shows each metric's last
    value, so `val/*` there is the last validation's, not the checkpoint's that was kept."""
    best = {f"best/{k}": v for k, v in result.best_metrics.items() if k.startswith("val/")}
    if not best:
        return
    tracker.log_metrics(best, step=step)
    conf, epoch = plan.conf, result.best_metrics.get("epoch")
    chosen = f"by `{conf['optimized_metric']}` ({conf['optimized_mode']})"
    chosen += f", epoch {int(epoch)}" if epoch is not None else ""
    tracker.set_tags(
        {
            "mlflow.note.content": (
                f"**{plan.run_name}**: {plan.task.name} on {plan.prepared.source}.\n\n"
                "- `val/*`: logged at every validation; the run page shows the **last** one.\n"
                f"- `best/val/*`: the **best checkpoint** ({chosen}), the weights that were "
                "tested and registered; the summary and the registry report these.\n"
                "- `test/*`: the best checkpoint on the held-out test split.\n"
            )
        }
    )


def _parent_tags() -> dict[str, str]:
    """Nest the job's run under the run named by the environment (a pipeline's parent run)."""
    tags = json.loads(os.environ.get(RUN_TAGS_ENV) or "{}")
    parent = os.environ.get(PARENT_RUN_ENV)
    return {**tags, "mlflow.parentRunId": parent} if parent else tags


def log_lineage(plan: JobPlan, tracker: Tracker) -> None:
    """What the run was made from, beyond its tags: the dataset (the run page's Datasets
    section), a patch of uncommitted changes when the tree is dirty, the installed packages.
    Journaled like every other write, so a tracking outage loses none of it."""
    if not tracker.tracked:
        return
    tracker.log_input(*dataset_of(plan))
    directory = plan.output_dir / LINEAGE_DIR
    files = [atomic_write_text(directory / "requirements.txt", frozen_requirements())]
    patch = git_patch()
    if patch:
        files.append(atomic_write_text(directory / "uncommitted.patch", patch))
    for path in files:
        tracker.log_artifact(path, LINEAGE_DIR)


def dataset_of(plan: JobPlan) -> tuple[dict[str, str], dict[str, str]]:
    """(MLflow dataset fields, input tags) of the job's prepared data."""
    from trainpipe.config.sources import source_of

    prepared = plan.prepared
    return dataset_input(
        name=str(plan.conf["data"].get("name") or plan.conf["experiment_name"]),
        digest=prepared.digest,
        source=prepared.source,
        source_type=source_of(plan.conf["data"]).origin,
        columns=plan.task.describe_data(plan.spec).columns,
        split_sizes=prepared.split_sizes(),
        split_digest=prepared.split_digest,
    )


def _sweep_tags() -> dict[str, str]:
    """Nest a --multirun job under its sweep's parent run (see tracking/sweep.py)."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return {}
    overrides = [
        o for o in hydra_cfg.overrides.task if not o.lstrip("+~").startswith("optuna_trial")
    ]
    tags = {OVERRIDES_TAG: " ".join(overrides), "trainpipe.sweep_dir": str(hydra_cfg.sweep.dir)}
    parent = parent_run_id(hydra_cfg.sweep.dir)
    if parent:
        tags["mlflow.parentRunId"] = parent
    return tags
