"""`trainpipe <command> [overrides]`: parse, check the config (no torch yet), then hand over to Hydra.

Import discipline: this module and everything it imports at module level stay free of torch,
lightning, mlflow and datasets, so `--help`, `--cfg job` and config errors answer in well under
a second. The stages are imported only inside the Hydra task function.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trainpipe.config  # noqa: F401  (registers the ${run_identity:} resolver)
from trainpipe import __version__
from trainpipe.errors import USER_ERROR_EXIT_CODE, ConfigError, JobFailed, UserError
from trainpipe.runtime import launch
from trainpipe.runtime.ranks import global_rank

log = logging.getLogger("trainpipe")

# command → the module whose run(cfg, conf) does the work
STAGES = {"train": "trainpipe.train", "eval": "trainpipe.evaluate"}
COMMANDS = {
    "train": "train a model: fit → test the best checkpoint → register it in MLflow",
    "eval": "evaluate a checkpoint or a registered model on the test split (model_uri=…)",
    "sync": "send a job's unsent tracking (after a tracking-server outage): trainpipe sync OUTPUT_DIR",
}

USAGE = f"""usage: trainpipe <command> [--multirun] [hydra overrides …]

commands:
{chr(10).join(f"  {name:<7}{text}" for name, text in COMMANDS.items())}

examples:
  trainpipe train                                   # the default experiment (digits + MLP)
  trainpipe train experiment=digits_cnn trainer.max_epochs=5
  trainpipe train data=csv data.path=rows.csv data.target=label
  trainpipe train --multirun model=mlp,cnn model.optimizer.lr=1e-3,3e-3
  trainpipe eval model_uri=models:/digits_mlp/1
  trainpipe sync outputs/train/digits_mlp/mlp-1a2b3c4d   # replay a job's tracking journal
  trainpipe train --cfg job                         # print the composed config, run nothing

options:
  -h, --help   this message (`trainpipe train --help` lists the config groups)
  --version    print the version
"""

# Hydra flags after which no job runs: nothing to pre-check
INFO_FLAGS = ("help", "hydra_help", "info", "cfg", "shell_completion")


@dataclass
class Preflight:
    """What the pre-flight check learned, for the task function in the same process."""

    output_dir: Path | None = None
    output_dir_is_new: bool = False
    # jobs of this launcher run on this machine (basic/joblib), so their devices must exist here
    local_launcher: bool = True


PREFLIGHT = Preflight()


def fail(err: UserError) -> None:
    print(f"trainpipe: {err}", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT_CODE)


def preflight(command: str, args: list[str]) -> dict[str, Any] | None:
    """Compose and validate the config (and check the data) before Hydra creates anything.

    Returns the resolved config of the job about to run (None when Hydra only prints something).
    """
    from hydra._internal.utils import get_args_parser
    from omegaconf import OmegaConf

    from trainpipe.config.compose import compose, output_dir, split_sweeps, varied_by_sweep
    from trainpipe.config.validate import validate

    parsed = get_args_parser().parse_args(args)
    if any(getattr(parsed, flag, None) for flag in INFO_FLAGS):
        return None
    overrides, swept = split_sweeps(parsed.overrides) if parsed.multirun else (parsed.overrides, [])
    cfg = compose(command, overrides, parsed.config_dir)
    try:
        conf = validate(cfg, command)
    except ConfigError as err:
        if varied_by_sweep(err.key, swept):
            return None  # this part differs per job: each job checks its own config
        raise
    launcher = str(OmegaConf.select(cfg, "hydra.launcher._target_", default=""))
    PREFLIGHT.local_launcher = "submitit" not in launcher.lower()
    world = launch.torchrun_world()
    if command == "train" and world is not None:
        launch.torchrun_devices(conf["trainer"], world)
    if parsed.multirun:
        return conf  # each job is checked again in its own process/dir
    PREFLIGHT.output_dir = output_dir(cfg)
    PREFLIGHT.output_dir_is_new = not PREFLIGHT.output_dir.exists()
    from trainpipe.data.prepare import prepare

    prepare(conf["data"])
    return conf


def _launch(command: str, args: list[str], conf: dict[str, Any]) -> list[str]:
    """Start more processes if the job needs them; return Hydra's argv for this process."""
    multirun = "--multirun" in args or "-m" in args
    # a cluster launcher's jobs run elsewhere: the devices they ask for are the cluster's business
    if command == "train" and launch.torchrun_world() is None and PREFLIGHT.local_launcher:
        nproc = launch.processes_to_start(conf["trainer"])
        if nproc > 1 and multirun:
            raise ConfigError(
                "trainer.devices",
                f"a --multirun job cannot start {nproc} processes itself; run the sweep under torchrun or hydra/launcher=slurm",
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


def _run_stage(command: str, cfg: Any) -> Any:
    """Hydra task function body: validate this job's config, then run the stage."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from trainpipe.config.validate import validate

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        conf = validate(cfg, command)
        stage = importlib.import_module(STAGES[command])
        return stage.run(cfg, conf)
    except UserError as err:
        if multirun:
            from trainpipe.tracking.sweep import record_failed_job

            log.error("job failed: %s", err)
            record_failed_job(cfg, str(err))
            return None  # recorded as a FAILED run; the sweep goes on
        if PREFLIGHT.output_dir_is_new and PREFLIGHT.output_dir is not None:
            shutil.rmtree(PREFLIGHT.output_dir, ignore_errors=True)
        fail(err)
    except JobFailed as err:
        if multirun:
            log.error("job failed (the sweep goes on): %s", err)
            return None
        print(f"trainpipe: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except Exception as err:
        if not multirun or type(err).__name__ == "TrialPruned":
            raise  # a single run fails loudly; a pruned trial is the Optuna sweeper's to record
        log.exception("job failed (the sweep goes on)")
        return None


def train_task(cfg: Any) -> Any:
    return _run_stage("train", cfg)


def eval_task(cfg: Any) -> Any:
    return _run_stage("eval", cfg)


TASKS = {"train": train_task, "eval": eval_task}


def sync_command(args: list[str]) -> None:
    """`trainpipe sync OUTPUT_DIR [--tracking-uri URI] [--timeout S]`: replay a job's journal."""
    import argparse

    parser = argparse.ArgumentParser(prog="trainpipe sync", description=COMMANDS["sync"])
    parser.add_argument(
        "output_dir", type=Path, help="the job's output dir (it holds tracking/journal.jsonl)"
    )
    parser.add_argument("--tracking-uri", default=None, help="default: the URI the job used")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to keep retrying (default 60)"
    )
    parsed = parser.parse_args(args)
    from trainpipe.tracking.tracker import sync

    try:
        left, journal = sync(parsed.output_dir, parsed.tracking_uri, parsed.timeout)
    except FileNotFoundError as err:
        print(f"trainpipe: {err}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
    if left:
        print(
            f"trainpipe: {left} tracking operation(s) still unsent (tracking server unreachable)",
            file=sys.stderr,
        )
        sys.exit(1)
    print(f"trainpipe: tracking of {parsed.output_dir} is up to date (MLflow run {journal.run_id})")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    if argv[0] == "--version":
        print(f"trainpipe {__version__}")
        return
    command, args = argv[0], argv[1:]
    if command == "sync":
        sync_command(args)
        return
    if command not in COMMANDS:
        print(f"trainpipe: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
    try:
        conf = preflight(command, args)
        if conf is not None:
            args = _launch(command, args, conf)
    except UserError as err:
        fail(err)

    import hydra

    from trainpipe.config import config_dir

    sys.argv = [f"trainpipe {command}", *args]
    hydra.main(config_path=str(config_dir()), config_name=command, version_base="1.3")(
        TASKS[command]
    )()
