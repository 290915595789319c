"""Register a trained model: the task's pickle-free package of the best weights, its model card,
queued for the registry with the rest of tracking (sent by the tracker's journal)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from trainpipe.fit_result import FitResult
from trainpipe.plan import JobPlan
from trainpipe.reports.model_card import CARD_DIR, CARD_FILE, write_model_card
from trainpipe.runtime.tracker import Tracker
from trainpipe.tracking.model_versions import CHALLENGER
from trainpipe.tracking.sweep_result import defer_registration

log = logging.getLogger(__name__)


def register(plan: JobPlan, tracker: Tracker, module: Any, result: FitResult) -> bool:
    """Package the best weights pickle-free and queue their registration (sent with the rest of
    tracking); False when this job registers nothing — a sweep's job leaves its registration to
    the sweep, which registers its best job (`registry.sweep`, tracking/sweep_result.py)."""
    conf = plan.conf
    if not (tracker.tracked and conf["registry"]["register"]):
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
    name = conf["registry"]["model_name"]
    if _in_sweep() and conf["registry"]["sweep"] == "best":
        defer_registration(package.directory, name, version_tags)
        log.info("the model is registered at the end of the sweep if this job is its best")
        return False
    tracker.register_model(package.directory, name, version_tags)
    tracker.set_alias(name, CHALLENGER)  # the newest version is the challenger (docs/registry.md)
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
