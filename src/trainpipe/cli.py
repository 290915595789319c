"""`trainpipe <command> [overrides]`: parse, plan the job (no torch for config errors), hand over to Hydra.

Import discipline: this module and everything it imports at module level stay free of torch,
lightning, mlflow and datasets, so `--help`, `--cfg job` and config errors answer in well under
a second. The stages are imported only inside the Hydra task function.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trainpipe.config  # noqa: F401  (registers the config resolvers)
from trainpipe import __version__
from trainpipe.errors import ConfigError, UserError
from trainpipe.runtime import launch
from trainpipe.runtime.failures import classify
from trainpipe.runtime.ranks import global_rank

log = logging.getLogger("trainpipe")

# Hydra commands: command → the stage module whose run(cfg, plan) does the work
JOB_MODULES = {"train": "trainpipe.train", "eval": "trainpipe.evaluate"}
# other commands: command → module with main(args) -> exit code
TOOLS = {
    "generate": "trainpipe.commands.generate",
    "predict": "trainpipe.commands.predict",
    "export": "trainpipe.commands.export",
    "estimate": "trainpipe.commands.estimate",
    "pipeline": "trainpipe.commands.pipeline",
    "models": "trainpipe.commands.models",
    "reproduce": "trainpipe.commands.reproduce",
    "sync": "trainpipe.commands.sync",
}
COMMANDS = {
    "train": "train a model: fit → test the best checkpoint → register it in MLflow",
    "eval": "score a checkpoint or a registered model on a test split (model_uri=…)",
    "generate": "continue a prompt with a language model (model_uri=… prompt=…)",
    "predict": "score a file with a model in chunks, resumably (model_uri=… data.path=… output=…)",
    "export": "write a language model as a Hugging Face GPT-2 dir: export MODEL --format hf OUT_DIR",
    "estimate": "parameters, FLOPs, memory per GPU, time and cost of a training config (no GPU needed)",
    "pipeline": "prepare → train → evaluate → register → promote, each stage cached by its inputs",
    "models": "the registry lifecycle: models list|history|promote|rollback|retire NAME",
    "reproduce": "retrain a registered version from its recorded config and compare: reproduce models:/NAME/N",
    "sync": "send a job's unsent tracking (after a tracking-server outage): trainpipe sync OUTPUT_DIR",
}

USAGE = f"""usage: trainpipe <command> [--multirun] [hydra overrides …]

commands:
{chr(10).join(f"  {name:<10}{text}" for name, text in COMMANDS.items())}

examples:
  trainpipe train                                   # an MLP on the bundled digits
  trainpipe train experiment=digits_cnn trainer.max_epochs=5
  trainpipe train data=csv data.path=wine.csv data.target=target
  trainpipe train --multirun model=mlp,cnn model.optimizer.lr=1e-3,3e-3
  trainpipe train data=sql data.uri=duckdb:///shop.duckdb data.table=orders data.target=churned
  trainpipe train experiment=digits_images          # a ResNet on the digits as PNG files
  trainpipe train data=images data.path=pets/       # your folder of class folders
  trainpipe eval model_uri=models:/digits/1
  trainpipe predict model_uri=models:/digits@champion data.path=new.parquet output=preds.parquet
  trainpipe train experiment=stdlib_gpt                 # a small GPT on the Python stdlib
  trainpipe generate model_uri=models:/stdlib_gpt/1 prompt="def main("
  trainpipe sync outputs/train/digits/digits-mlp-1a2b3c4d   # replay a job's tracking journal
  trainpipe train --cfg job                         # print the composed config, run nothing

options:
  -h, --help   this message (`trainpipe train --help` lists the config groups)
  --version    print the version
"""

# Hydra flags after which no job runs: nothing to plan
INFO_FLAGS = ("help", "hydra_help", "info", "cfg", "shell_completion")


def fail(err: BaseException) -> None:
    """One line on stderr and the exit code the failure policy gives (runtime/failures.py)."""
    from trainpipe.commands import failure_exit

    sys.exit(failure_exit(err))


@dataclass
class Preflight:
    """What was decided before Hydra starts, handed to the task function (no module globals)."""

    plan: Any = None  # JobPlan of a single run (a sweep's jobs plan themselves)
    output_dir_is_new: bool = False  # a single run that fails with a user error removes it
    trainer: dict[str, Any] | None = None  # the resolved trainer section
    local_launcher: bool = True  # jobs run on this machine (basic/joblib), not on a cluster
    lock: Any = None  # the output dir's lock, held for the life of the process


def preflight(command: str, args: list[str]) -> Preflight | None:
    """Compose, validate and (for a single run) plan the job before Hydra creates anything.

    None when Hydra only prints something (--help, --cfg, …).
    """
    from hydra._internal.utils import get_args_parser
    from omegaconf import OmegaConf

    from trainpipe.config.compose import compose, split_sweeps, varied_by_sweep
    from trainpipe.config.validate import validate
    from trainpipe.errors import ConfigError

    parsed = get_args_parser().parse_args(args)
    if any(getattr(parsed, flag, None) for flag in INFO_FLAGS):
        return None
    overrides, swept = split_sweeps(parsed.overrides) if parsed.multirun else (parsed.overrides, [])
    cfg = compose(command, overrides, parsed.config_dir)
    launcher = str(OmegaConf.select(cfg, "hydra.launcher._target_", default=""))
    result = Preflight(local_launcher="submitit" not in launcher.lower())
    try:
        conf = validate(cfg, command)
        if command == "train":
            from trainpipe.tasks import check_config

            check_config(conf)
    except ConfigError as err:
        if parsed.multirun and varied_by_sweep(err.key, swept):
            return result  # this part differs per job: each job checks its own config
        raise
    result.trainer = conf.get("trainer")
    direction = OmegaConf.select(cfg, "hydra.sweeper.direction", default=None)
    if parsed.multirun and direction is not None and str(direction) not in ("maximize", "minimize"):
        raise ConfigError(
            "optimized_mode",
            f"an Optuna search needs a direction (hydra.sweeper.direction is {direction!r}): "
            "set optimized_metric and optimized_mode (e.g. val/acc and max)",
        )
    world = launch.torchrun_world()
    if command == "train" and world is not None:
        launch.torchrun_devices(conf["trainer"], world)
    if parsed.multirun:
        return result
    from trainpipe.plan import plan_job

    result.plan = plan_job(command, cfg, conf)
    result.output_dir_is_new = not result.plan.output_dir.exists()
    return result


def _launch(command: str, args: list[str], pre: Preflight) -> list[str]:
    """Start more processes if the job needs them; return Hydra's argv for this process."""
    multirun = "--multirun" in args or "-m" in args
    # a cluster launcher's jobs run elsewhere: the devices they ask for are the cluster's business
    if (
        command == "train"
        and pre.trainer
        and launch.torchrun_world() is None
        and pre.local_launcher
    ):
        nproc = launch.processes_to_start(pre.trainer)
        if nproc > 1 and multirun:
            raise ConfigError(
                "trainer.devices",
                f"a --multirun job cannot start {nproc} processes itself; run the sweep under "
                "torchrun or hydra/launcher=slurm",
            )
        if nproc > 1:
            launch.relaunch_with_torchrun(nproc, command, args)
    if global_rank() > 0:
        # every rank runs Hydra in the same output dir: only rank 0 writes .hydra/, each rank its own log
        args = [
            *args,
            "hydra.output_subdir=null",
            "hydra.job_logging.handlers.file.filename=${hydra.runtime.output_dir}/${hydra.job.name}.rank${oc.env:RANK}.log",
        ]
    return args


def run_stage(command: str, cfg: Any, pre: Preflight) -> Any:
    """The Hydra task function's body: take the plan (or plan a sweep's job), run the stage, and
    apply the failure policy: a sweep goes on after a failed job, a single run exits with its code."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from trainpipe.plan import plan_job

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    plan = pre.plan
    from trainpipe.console import quiet_libraries, replay_early_lines, to_log_file

    quiet_libraries()
    replay_early_lines()
    try:
        if plan is None:
            plan = plan_job(command, cfg)
        plan.adopt(Path(HydraConfig.get().runtime.output_dir))
        return importlib.import_module(JOB_MODULES[command]).run(plan)
    except BaseException as err:
        outcome = classify(err)
        if not multirun:  # the console gets one line (or Hydra's traceback); the log file all
            traceback = err if outcome.name in ("failed", "error") else None
            to_log_file(f"job ended ({outcome.name}): {outcome.reason}", logging.ERROR, traceback)
        if outcome.name == "pruned" or (outcome.name == "error" and not multirun):
            raise  # a pruned trial is the sweeper's to record; a bug shows its traceback
        if multirun and outcome.name in ("user_error", "failed", "error"):
            if outcome.name == "user_error":  # failed before its run started: record it
                from trainpipe.tracking.sweep import record_failed_job

                record_failed_job(cfg, str(err))
            log.error(
                "job failed (the sweep goes on): %s",
                outcome.reason,
                exc_info=outcome.name == "error",
            )
            return None
        if outcome.name == "user_error" and pre.output_dir_is_new and plan is not None:
            shutil.rmtree(plan.output_dir, ignore_errors=True)
        fail(err)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    if argv[0] == "--version":
        print(f"trainpipe {__version__}")
        return
    command, args = argv[0], argv[1:]
    from trainpipe.console import log_before_hydra, quiet_environment

    quiet_environment()
    if command in TOOLS:
        sys.exit(importlib.import_module(TOOLS[command]).main(args))
    if command not in JOB_MODULES:
        print(f"trainpipe: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)
    if "--help" in args or "-h" in args:
        from trainpipe.commands.help import help_text

        print(help_text(command, COMMANDS[command]))
        return
    from trainpipe.tracking.lineage import COMMAND_ENV, command_line

    # until Hydra configures the job's logging: the plan's own lines (data summary) on stdout,
    # and kept for the job's log file
    log_before_hydra()
    os.environ.setdefault(COMMAND_ENV, command_line(["trainpipe", command, *args]))
    try:
        pre = preflight(command, args) or Preflight()
        args = _launch(command, args, pre)
        if pre.plan is not None and global_rank() == 0:  # after a relaunch: its rank 0 holds it
            from trainpipe.runtime.lock import OutputDirLock

            pre.lock = OutputDirLock(pre.plan.output_dir).acquire()
    except (UserError, KeyboardInterrupt) as err:
        fail(err)

    import hydra

    from trainpipe.config import config_dir

    def task_function(cfg: Any) -> Any:
        return run_stage(command, cfg, pre)

    sys.argv = [f"trainpipe {command}", *args]
    hydra.main(config_path=str(config_dir()), config_name=command, version_base="1.3")(
        task_function
    )()
