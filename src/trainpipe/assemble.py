"""Build the lightning.Trainer of a job: config callbacks + the runner's own, logger, checkpoint IO.

The runner's callbacks are always there: run identity (MLflow run id + config fingerprint in
every checkpoint), resume checkpoints, preemption handling, the divergence guard, and Optuna
pruning when the job is a trial of an Optuna sweep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from trainpipe.hpo import current_trial
from trainpipe.runtime.launch import torchrun_devices, torchrun_world


def build_trainer(
    cfg: DictConfig,
    conf: dict[str, Any],
    output_dir: Path,
    tracker: Any,
    run_id: str | None,
    model_fingerprint: str,
) -> Any:
    from trainpipe.callbacks.preemption import PreemptionHandler
    from trainpipe.callbacks.run_identity import RunIdentity
    from trainpipe.runtime.checkpoint_io import AtomicCheckpointIO

    checkpoints = str(output_dir / "checkpoints")
    resume_checkpoint = instantiate(cfg.checkpoint, dirpath=checkpoints)
    divergence = instantiate(cfg.divergence)
    resume_checkpoint.before_save = [
        lambda trainer, step: divergence.check_weights(trainer.lightning_module, step),
        lambda trainer, step: tracker.commit(step),
    ]
    callbacks = [
        RunIdentity(run_id, model_fingerprint),
        divergence,
        resume_checkpoint,
        PreemptionHandler(resume_checkpoint.save, tuple(conf["preemption"]["signals"])),
    ]
    trial = current_trial(cfg)
    if trial is not None:
        from trainpipe.callbacks.optuna_pruning import OptunaPruning

        callbacks.append(OptunaPruning(trial, conf["optimized_metric"]))
    for name, callback_cfg in (cfg.get("callbacks") or {}).items():
        if (
            "ProgressBar" in callback_cfg.get("_target_", "")
            and not conf["trainer"]["enable_progress_bar"]
        ):
            continue
        extra = (
            {"dirpath": checkpoints}
            if name == "model_checkpoint" and not callback_cfg.get("dirpath")
            else {}
        )
        callbacks.append(instantiate(callback_cfg, **extra))

    placement = {}
    world = torchrun_world()
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
