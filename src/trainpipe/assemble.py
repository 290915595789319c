"""Build the lightning.Trainer of a job: config callbacks + the runner's own, logger, checkpoint IO.

The runner's callbacks are always there: run identity (MLflow run id + config fingerprint in
every checkpoint), resume checkpoints, preemption handling, the divergence guard, a validation
of the final weights (callbacks/final_validation.py), and Optuna
pruning when the job is a trial of an Optuna sweep. Every object comes from its config node
through `instantiate_checked` (arguments checked against the target's signature first).

On CUDA, fp32 matmuls and convolutions may use TF32 tensor cores (`use_tf32`): what every fast
PyTorch training loop sets, ~8x the fp32 rate on Ampere and newer, with a 10-bit mantissa.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from hydra_plugins.trainpipe_optuna_sweeper.trial import current_trial
from trainpipe.config.targets import instantiate_checked
from trainpipe.plan import JobPlan
from trainpipe.runtime.job import Job
from trainpipe.runtime.launch import torchrun_devices, torchrun_world


def build_trainer(plan: JobPlan, job: Job, run_id: str | None, model_fingerprint: str) -> Any:
    from trainpipe.callbacks.final_validation import FinalValidation
    from trainpipe.callbacks.preemption import PreemptionHandler
    from trainpipe.callbacks.run_identity import RunIdentity
    from trainpipe.runtime.checkpoint_io import AtomicCheckpointIO

    conf, cfg = plan.conf, plan.config
    use_tf32()
    checkpoints = str(job.output_dir / "checkpoints")
    divergence = instantiate_checked(cfg.divergence, "divergence")
    resume_checkpoint = instantiate_checked(
        cfg.checkpoint,
        "checkpoint",
        dirpath=checkpoints,
        before_save=[
            lambda trainer, step: divergence.check_weights(trainer.lightning_module, step),
            lambda trainer, step: job.tracker.commit(step),
        ],
    )
    callbacks = [
        RunIdentity(run_id, model_fingerprint, conf),
        divergence,
        resume_checkpoint,
        PreemptionHandler(resume_checkpoint.save, job.signals),
        FinalValidation(),
    ]
    trial = current_trial(cfg)
    if trial is not None:
        from trainpipe.callbacks.optuna_pruning import OptunaPruning

        callbacks.append(OptunaPruning(trial, conf["optimized_metric"]))
    callbacks += plan.task.callbacks(conf, job.output_dir, job.tracker)
    callbacks += _configured_callbacks(cfg, conf, checkpoints)

    placement = {}
    world = torchrun_world()
    if world is not None:  # Lightning needs devices/num_nodes spelled out under torchrun
        devices, num_nodes = torchrun_devices(conf["trainer"], world)
        placement = {"devices": devices, "num_nodes": num_nodes}
    return instantiate_checked(
        cfg.trainer,
        "trainer",
        callbacks=callbacks,
        logger=job.tracker.lightning_logger(),
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(job.output_dir),
        **placement,
    )


def use_tf32() -> None:
    """TF32 for fp32 matmuls and cuDNN convolutions on CUDA (a no-op without a GPU).

    The legacy switch on purpose: Lightning reads `torch.get_float32_matmul_precision()`, and
    torch refuses to answer it once the new `fp32_precision` API has been used.
    """
    import torch

    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.allow_tf32 = True


def _configured_callbacks(cfg: DictConfig, conf: dict[str, Any], checkpoints: str) -> list[Any]:
    built = []
    for name, callback_cfg in (cfg.get("callbacks") or {}).items():
        target = callback_cfg.get("_target_", "")
        if "progress" in target.lower() and not conf["trainer"]["enable_progress_bar"]:
            continue
        extra = (
            {"dirpath": checkpoints}
            if name == "model_checkpoint" and not callback_cfg.get("dirpath")
            else {}
        )
        built.append(instantiate_checked(callback_cfg, f"callbacks.{name}", **extra))
    return built
