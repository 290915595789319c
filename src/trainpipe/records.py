"""What a training run records: its tags and params, the fit's result, the registered model and
the summary printed at the end (and kept in job.json)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from trainpipe.config.identity import IDENTITY_SECTIONS, fingerprint
from trainpipe.plan import JobPlan
from trainpipe.report import ui_hint
from trainpipe.reports.model_card import CARD_DIR, CARD_FILE, write_model_card
from trainpipe.runtime.atomic import atomic_write_text
from trainpipe.runtime.ranks import is_rank_zero
from trainpipe.runtime.tracker import Tracker
from trainpipe.tracking.lineage import (
    COMMAND_ENV,
    command_line,
    dataset_columns,
    dataset_input,
    environment_tags,
    frozen_requirements,
    git_patch,
    git_tags,
    versions,
)
from trainpipe.tracking.params import flatten
from trainpipe.tracking.sweep import OVERRIDES_TAG, parent_run_id
from trainpipe.tracking.sweep_result import defer_registration

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
    """The training config's fingerprint (run_name additionally hashes the data's content)."""
    from omegaconf import OmegaConf

    return fingerprint(OmegaConf.create(plan.conf), IDENTITY_SECTIONS)


def _parent_tags() -> dict[str, str]:
    """Nest the job's run under the run named by the environment (a pipeline's parent run)."""
    tags = json.loads(os.environ.get(RUN_TAGS_ENV) or "{}")
    parent = os.environ.get(PARENT_RUN_ENV)
    return {**tags, "mlflow.parentRunId": parent} if parent else tags


def log_lineage(plan: JobPlan, tracker: Tracker) -> None:
    """What the run was made from, beyond its tags: the dataset (the run page's Datasets
    section), a patch of uncommitted changes when the tree is dirty, the installed packages.
    Journaled like every other write, so a tracking outage loses none of it."""
    if not tracker.enabled:
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
    prepared = plan.prepared
    return dataset_input(
        name=str(plan.conf["data"].get("name") or plan.conf["experiment_name"]),
        digest=prepared.digest,
        source=prepared.source,
        source_kind=str(plan.conf["data"].get("source")),
        columns=dataset_columns(plan.spec),
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


@dataclass
class FitResult:
    """What the fit produced: the best checkpoint, its validation metrics and the objective."""

    objective: float | None
    best_path: str | None
    best_metrics: dict[str, float]  # val/* of the best checkpoint (or of the last epoch), + epoch
    test_metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, trainer: Any, metric: str) -> FitResult:
        last = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        best = trainer.checkpoint_callback
        if best is None or not best.best_model_path:
            return cls(last.get(metric), None, last)
        metrics = getattr(best, "best_metrics", None) or last
        objective = float(best.best_model_score) if best.monitor == metric else metrics.get(metric)
        return cls(objective, best.best_model_path, metrics)

    def test(self, trainer: Any, module: Any, datamodule: Any) -> None:
        """Score the best checkpoint (its weights stay loaded in `module`) on the test split."""
        results = trainer.test(
            module,
            datamodule=datamodule,
            ckpt_path=self.best_path,
            verbose=False,
            weights_only=True,
        )
        self.test_metrics = {k: float(v) for k, v in results[0].items()}


def register(plan: JobPlan, tracker: Tracker, module: Any, result: FitResult) -> bool:
    """Package the best weights pickle-free and queue their registration (sent with the rest of
    tracking); False when this job registers nothing — a sweep's job leaves its registration to
    the sweep, which registers its best job (`registry.sweep`, tracking/sweep_result.py)."""
    conf = plan.conf
    if not (tracker.enabled and conf["registry"]["register"]):
        return False
    if result.best_path and not result.test_metrics:  # test() already loaded the best weights
        from trainpipe.runtime.checkpoint_io import load_checkpoint_file

        module.load_state_dict(load_checkpoint_file(result.best_path)["state_dict"])
    package = plan.task.write_package(module, plan.prepared, plan.output_dir / "model")
    version_tags = {k: f"{v:.6g}" for k, v in result.test_metrics.items()}
    version_tags.update(
        {
            "dataset_digest": plan.prepared.digest,
            "split_digest": plan.prepared.split_digest,
            "optimized_metric": conf["optimized_metric"],
        }
    )
    card = _write_card(plan, tracker, result, package.directory)
    if card:
        version_tags["model_card"] = f"{CARD_DIR}/{CARD_FILE}"
    if _in_sweep() and conf["registry"]["sweep"] == "best":
        defer_registration(package.directory, conf["registry"]["model_name"], version_tags)
        log.info("the model is registered at the end of the sweep if this job is its best")
        return False
    tracker.register_model(package.directory, conf["registry"]["model_name"], version_tags)
    return True


def _in_sweep() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _write_card(plan: JobPlan, tracker: Tracker, result: FitResult, package_dir: Path) -> bool:
    """The model card and its plots, in the package dir and logged to the run before the model
    is registered. A failure to draw them is reported, never fatal: the model is what matters."""
    metrics = {**result.best_metrics, **result.test_metrics}
    metrics.pop("epoch", None)
    try:
        files = write_model_card(
            plan, metrics, tracker.metric_history(), tracker.run_id, package_dir
        )
    except Exception as err:
        log.warning("no model card for %s: %s", plan.run_name, str(err).splitlines()[0])
        return False
    for path in files:
        tracker.log_artifact(path, CARD_DIR)
    return True


def identity(plan: JobPlan) -> dict[str, str]:
    """What job.json keeps to tell a later run of the same config that the data changed."""
    return {"config_fingerprint": fingerprint_of(plan), "data_digest": plan.prepared.digest}


def data_change(plan: JobPlan) -> str | None:
    """ "since <run> (digest a → b)" if an earlier complete job of this config saw other data."""
    from trainpipe.runtime.job_state import JobState

    mine = identity(plan)
    earlier = []
    for job_dir in plan.output_dir.parent.iterdir():
        state = JobState.load(job_dir) if job_dir != plan.output_dir else None
        if (
            state
            and state.status == "complete"
            and state.identity.get("config_fingerprint") == mine["config_fingerprint"]
            and state.identity.get("data_digest") != mine["data_digest"]
        ):
            earlier.append((job_dir.stat().st_mtime, job_dir.name, state.identity["data_digest"]))
    if not earlier:
        return None
    _, name, digest = max(earlier)
    return f"since {name} (data digest {digest} → {mine['data_digest']})"


def summary_rows(
    plan: JobPlan, job: Any, result: FitResult, registering: bool, unsent: int
) -> dict[str, Any]:
    tracker, output_dir = job.tracker, plan.output_dir
    model = None
    if registering:
        name = plan.conf["registry"]["model_name"]
        model = (
            tracker.registered_version(name) or f"models:/{name} (registered once tracking is sent)"
        )
    best = dict(result.best_metrics)
    epoch = best.pop("epoch", None)
    return {
        "task": f"{plan.task.name} ({plan.task_reason})",
        "data changed": data_change(plan),
        "run id": tracker.run_id
        or (
            "(not tracked)"
            if not tracker.enabled
            else "(not created yet: the tracking server is unreachable)"
        ),
        "objective": result.objective,
        "best checkpoint": f"{result.best_path} (epoch {epoch})" if result.best_path else None,
        **{k: round(v, 4) for k, v in sorted(best.items())},
        **{k: round(v, 4) for k, v in sorted(result.test_metrics.items())},
        "model": model,
        "output dir": str(output_dir),
        "tracking": f"{unsent} operation(s) waiting: trainpipe sync {output_dir}"
        if unsent
        else None,
        "look at it": ui_hint(tracker.tracking_uri),
    }
