"""`trainpipe train`: seed → build from config → fit → test the best checkpoint → register.

A thin orchestration over the data, models, tracking and runtime packages; read it top to bottom.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from trainpipe.config.resolvers import config_fingerprint
from trainpipe.hpo import current_trial
from trainpipe.report import print_config_tree, print_summary, ui_hint
from trainpipe.runtime.job_state import JobState, last_checkpoint
from trainpipe.runtime.launch import torchrun_devices, torchrun_world
from trainpipe.runtime.ranks import is_rank_zero
from trainpipe.tracking import NullTracker
from trainpipe.tracking.lineage import command_line, git_tags, versions
from trainpipe.tracking.params import flatten
from trainpipe.tracking.sweep import OBJECTIVE_TAG, OVERRIDES_TAG, parent_run_id

log = logging.getLogger(__name__)


def run(cfg: DictConfig, conf: dict[str, Any]) -> float | None:
    """Train one job. Returns the optimized metric (what a sweeper maximises)."""
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    run_name = Path(
        conf["paths"]["output_dir"]
    ).name  # the job's identity (a sweep job's dir is numbered)
    job = JobState.load(output_dir)
    if job.status == "complete":
        print_summary(f"{run_name} is already complete (nothing retrained)", job.summary)
        value = job.summary.get("objective")
        return float(value) if value is not None else None

    import lightning as L

    from trainpipe.callbacks.run_identity import RunIdentity

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

    tracker = instantiate(cfg.logger) if is_rank_zero() else NullTracker()
    fingerprint = config_fingerprint(cfg)
    resume_from = last_checkpoint(output_dir)
    tags = {
        "trainpipe.command": command_line(),
        "trainpipe.output_dir": str(output_dir.resolve()),
        "trainpipe.config_fingerprint": fingerprint,
        "trainpipe.data.digest": data.digest,
        "trainpipe.data.source": data.source,
        **git_tags(),
        **versions(),
    }
    tags.update(_sweep_tags())
    run_id = tracker.start(run_name, tags, run_id=job.run_id if resume_from else None)
    if is_rank_zero():
        JobState(run_id=run_id, status="running").save(output_dir)
    if resume_from is None and is_rank_zero():
        tracker.log_params(flatten(conf))
        config_file = output_dir / "config.yaml"
        config_file.write_text(OmegaConf.to_yaml(conf))
        tracker.log_artifact(config_file)

    try:
        extra_callbacks = [RunIdentity(run_id, fingerprint)]
        trial = current_trial(cfg)
        if trial is not None:
            from trainpipe.callbacks.optuna_pruning import OptunaPruning

            extra_callbacks.append(OptunaPruning(trial, conf["optimized_metric"]))
        trainer = _build_trainer(cfg, conf, output_dir, tracker, extra_callbacks)
        trainer.fit(
            model, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None
        )
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        objective = _objective(trainer, conf["optimized_metric"], metrics)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if conf["test_after_fit"]:
            results = trainer.test(
                model, datamodule=datamodule, ckpt_path=best or None, verbose=False
            )
            metrics.update({k: float(v) for k, v in results[0].items()})
        model_uri = _register(conf, tracker, model, data, metrics, best) if is_rank_zero() else None
    except BaseException as err:
        pruned = type(err).__name__ == "TrialPruned"  # optuna stopped this trial early
        if pruned:
            tracker.set_tags({"trainpipe.pruned": "true"})
        stopped = pruned or isinstance(err, KeyboardInterrupt)
        tracker.finish("KILLED" if stopped else "FAILED", reason=f"{type(err).__name__}: {err}")
        if is_rank_zero():
            JobState(run_id=run_id, status="failed").save(output_dir)
        raise
    if objective is not None:
        tracker.set_tags({OBJECTIVE_TAG: repr(objective)})
    tracker.finish("FINISHED")

    summary = {
        "run id": run_id,
        "objective": objective,
        **{k: round(v, 4) for k, v in sorted(metrics.items())},
        "best checkpoint": best or None,
        "model": model_uri,
        "output dir": str(output_dir),
        "look at it": ui_hint(tracker.tracking_uri),
    }
    if is_rank_zero():
        JobState(run_id=run_id, status="complete", summary=summary).save(output_dir)
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


def _build_trainer(
    cfg: DictConfig,
    conf: dict[str, Any],
    output_dir: Path,
    tracker: Any,
    extra_callbacks: list[Any],
) -> Any:
    """lightning.Trainer from config, with our callbacks, logger and atomic checkpoint IO."""
    from trainpipe.runtime.checkpoint_io import AtomicCheckpointIO

    callbacks = list(extra_callbacks)
    for name, callback_cfg in (cfg.get("callbacks") or {}).items():
        if (
            "ProgressBar" in callback_cfg.get("_target_", "")
            and not conf["trainer"]["enable_progress_bar"]
        ):
            continue
        extra = (
            {"dirpath": str(output_dir / "checkpoints")}
            if name == "model_checkpoint" and not callback_cfg.get("dirpath")
            else {}
        )
        callbacks.append(instantiate(callback_cfg, **extra))
    world = torchrun_world()
    placement = {}
    if world is not None:  # Lightning needs devices/num_nodes spelled out under torchrun
        devices, num_nodes = torchrun_devices(conf["trainer"], world)
        placement = {"devices": devices, "num_nodes": num_nodes}
    return instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=tracker.lightning_logger(),
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(output_dir),
        **placement,
    )


def _register(
    conf: dict[str, Any], tracker: Any, model: Any, data: Any, metrics: dict[str, float], best: str
) -> str | None:
    """Log the best weights as a pickle-free pyfunc model and register a new version."""
    if not (tracker.enabled and tracker.run_id and conf["registry"]["register"]):
        return None
    from trainpipe.runtime.checkpoint_io import load_checkpoint_file
    from trainpipe.tracking.registry import log_and_register

    if best and os.path.isfile(best):
        state = load_checkpoint_file(best)["state_dict"]
        model.load_state_dict(state)
    spec = model.spec
    example = data.splits["test"].with_format("numpy")[:5]["features"]
    version_tags = {k: f"{v:.6g}" for k, v in metrics.items() if k.startswith("test/")}
    version_tags["dataset_digest"] = data.digest
    try:
        uri, _ = log_and_register(
            tracker.tracking_uri,
            tracker.run_id,
            conf["registry"]["model_name"],
            model.classifier,
            spec,
            example,
            version_tags,
        )
    except (
        Exception
    ) as err:  # the model is in the checkpoint; a registry hiccup must not fail the job
        log.warning(
            "model registration failed (the trained weights are in the checkpoints): %s", err
        )
        return None
    return uri
