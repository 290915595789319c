"""`trainpipe train`: seed → build from config → fit (resuming if needed) → test best → register.

A thin orchestration over the data, models, tracking and runtime packages; read it top to bottom.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from trainpipe.config.resolvers import MODEL_SECTIONS, config_fingerprint
from trainpipe.report import print_config_tree, print_summary, ui_hint
from trainpipe.runtime.job_state import JobState
from trainpipe.runtime.ranks import is_rank_zero
from trainpipe.runtime.resume import archive_previous_attempt, resume_point
from trainpipe.tracking import NullTracker
from trainpipe.tracking.lineage import command_line, git_tags, versions
from trainpipe.tracking.params import flatten
from trainpipe.tracking.sweep import OBJECTIVE_TAG, OVERRIDES_TAG, parent_run_id

log = logging.getLogger(__name__)


def run(cfg: DictConfig, conf: dict[str, Any]) -> float | None:
    """Train one job. Returns the optimized metric (what a sweeper optimises)."""
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    # the job's identity: its output dir's name (a sweep job's dir is numbered instead)
    run_name = Path(conf["paths"]["output_dir"]).name
    job = JobState.load(output_dir)
    if job.status == "complete" and conf["resume"] == "auto":
        print_summary(
            f"{run_name} is already complete (nothing retrained; resume=never trains again)",
            job.summary,
        )
        value = job.summary.get("objective")
        return float(value) if value is not None else None
    if conf["resume"] == "never" and is_rank_zero():
        archive_previous_attempt(output_dir)

    import lightning as L

    L.seed_everything(conf["seed"], workers=True, verbose=False)
    if is_rank_zero():
        print_config_tree(conf)
    datamodule = instantiate(cfg.data)
    data = datamodule.prepared
    model = instantiate(
        cfg.model,
        input_shape=list(data.input_shape),
        num_classes=data.num_classes,
        num_features=data.num_features,
        _convert_="all",
    )
    model.classifier.set_standardization(data.feature_mean, data.feature_std)
    model.spec.update(feature_names=data.feature_names, class_names=data.class_names)
    model_fingerprint = config_fingerprint(cfg, sections=MODEL_SECTIONS)
    start_from = resume_point(conf["resume"], output_dir, model_fingerprint)

    tracker = (
        instantiate(cfg.logger, hold_metrics_until_commit=True) if is_rank_zero() else NullTracker()
    )
    tags = {
        "trainpipe.command": command_line(),
        "trainpipe.output_dir": str(output_dir.resolve()),
        "trainpipe.config_fingerprint": config_fingerprint(cfg),
        "trainpipe.data.digest": data.digest,
        "trainpipe.data.source": data.source,
        **git_tags(),
        **versions(),
        **_sweep_tags(),
    }
    run_id = tracker.start(run_name, tags, journal_dir=output_dir / "tracking")
    if is_rank_zero():
        JobState(run_id=run_id, status="running").save(output_dir)
        tracker.log_params(flatten(conf))
        (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(conf))
        tracker.log_artifact(output_dir / "config.yaml")
    if start_from is not None:
        log.info("resuming from %s", start_from)

    from trainpipe.assemble import build_trainer
    from trainpipe.callbacks.preemption import EXIT_PREEMPTED, Preempted

    try:
        trainer = build_trainer(cfg, conf, output_dir, tracker, run_id, model_fingerprint)
        trainer.fit(model, datamodule=datamodule, ckpt_path=str(start_from) if start_from else None)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        objective = _objective(trainer, conf["optimized_metric"], metrics)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if conf["test_after_fit"]:
            results = trainer.test(
                model, datamodule=datamodule, ckpt_path=best or None, verbose=False
            )
            metrics.update({k: float(v) for k, v in results[0].items()})
        model_uri = (
            _register(conf, tracker, model, data, metrics, best, output_dir)
            if is_rank_zero()
            else None
        )
    except Preempted as err:
        tracker.set_tags({"trainpipe.preempted": f"{err.signal_name} at step {err.step}"})
        tracker.finish("KILLED", reason=f"preempted: {err}; rerun the same command to resume")
        if is_rank_zero():
            JobState(run_id=tracker.run_id, status="preempted").save(output_dir)
            _requeue(conf["preemption"]["requeue"])
        log.warning("%s; exiting with %d", err, EXIT_PREEMPTED)
        raise SystemExit(EXIT_PREEMPTED) from None
    except BaseException as err:
        pruned = type(err).__name__ == "TrialPruned"  # optuna stopped this trial early
        if pruned:
            tracker.set_tags({"trainpipe.pruned": "true"})
        stopped = pruned or isinstance(err, KeyboardInterrupt)
        tracker.finish("KILLED" if stopped else "FAILED", reason=f"{type(err).__name__}: {err}")
        if is_rank_zero():
            JobState(run_id=tracker.run_id, status="failed").save(output_dir)
        raise
    if objective is not None:
        tracker.set_tags({OBJECTIVE_TAG: repr(objective)})
    unsent = tracker.finish("FINISHED")
    if model_uri is not None and not unsent:
        from trainpipe.tracking.registry import registered_version

        model_uri = registered_version(
            tracker.tracking_uri, conf["registry"]["model_name"], tracker.run_id
        )

    summary = {
        "run id": tracker.run_id or "(not created yet: the tracking server is unreachable)",
        "objective": objective,
        **{k: round(v, 4) for k, v in sorted(metrics.items())},
        "best checkpoint": best or None,
        "model": model_uri,
        "output dir": str(output_dir),
        "tracking": f"{unsent} operation(s) waiting: trainpipe sync {output_dir}"
        if unsent
        else None,
        "look at it": ui_hint(tracker.tracking_uri),
    }
    if is_rank_zero():
        JobState(run_id=tracker.run_id, status="complete", summary=summary).save(output_dir)
        print_summary(f"trained {run_name}", summary)
    return objective


def _objective(trainer: Any, metric: str, metrics: dict[str, float]) -> float | None:
    """What a sweep optimises: the best checkpoint's score if it monitors `metric`, else the last value."""
    checkpoint = trainer.checkpoint_callback
    if (
        checkpoint is not None
        and checkpoint.monitor == metric
        and checkpoint.best_model_score is not None
    ):
        return float(checkpoint.best_model_score)
    return metrics.get(metric)


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


def _register(
    conf: dict[str, Any],
    tracker: Any,
    model: Any,
    data: Any,
    metrics: dict[str, float],
    best: str,
    output_dir: Path,
) -> str | None:
    """Package the best weights pickle-free and queue their registration (sent with the rest of tracking)."""
    if not (tracker.enabled and conf["registry"]["register"]):
        return None
    from trainpipe.runtime.checkpoint_io import load_checkpoint_file
    from trainpipe.tracking.registry import write_model_package

    if best and os.path.isfile(best):
        model.load_state_dict(load_checkpoint_file(best)["state_dict"])
    example = data.splits["test"].with_format("numpy")[:5]["features"]
    package = write_model_package(output_dir / "model", model.classifier, model.spec, example)
    version_tags = {k: f"{v:.6g}" for k, v in metrics.items() if k.startswith("test/")}
    version_tags["dataset_digest"] = data.digest
    name = conf["registry"]["model_name"]
    tracker.register_model(package, name, version_tags)
    return f"models:/{name} (registered once tracking is sent)"


def _requeue(mode: str) -> None:
    """Put a preempted SLURM job back in the queue (`preemption.requeue`: auto | never)."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if mode == "never" or not job_id:
        return
    result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    if result.returncode == 0:
        log.info("requeued SLURM job %s", job_id)
    else:
        log.warning("`scontrol requeue %s` failed: %s", job_id, result.stderr.strip())
