"""The train stage's job: `trainpipe train …` as a child process, nested under the pipeline's run.

A child process keeps the training job's own guarantees (its lock, resume, journal); the stage
only names the job, passes stop signals on and reads back what it registered.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from trainpipe.errors import JobFailed
from trainpipe.pipeline.context import Pipeline
from trainpipe.runtime.failures import EXIT_INTERRUPTED, EXIT_PREEMPTED

STOP = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)  # what preemption.signals defaults to


class StageFailed(JobFailed):
    """A stage could not produce its output: one line naming it; the exit code says how."""

    def __init__(self, stage: str, message: str, exit_code: int = 1) -> None:
        super().__init__(f"{stage}: {message}")
        self.exit_code = exit_code


def training_job(pipeline: Pipeline, key: str) -> tuple[list[str], str, Path]:
    """(overrides, run name, output dir) of the train stage's job.

    Its run name is the default one plus the stage's key, so the job is a function of
    everything the key covers (the code version included, which `trainpipe train`'s own
    identity leaves out): a miss trains anew, a killed pipeline resumes the same job. A run_name
    given on the command line is kept as is.
    """
    from omegaconf import OmegaConf, open_dict

    overrides = pipeline.train_overrides
    if any(o.lstrip("+").startswith("run_name=") for o in overrides):
        name = str(pipeline.conf["run_name"])
    else:
        name = f"{pipeline.conf['run_name']}-p{key[:8]}"
        overrides = [*overrides, f"run_name={name}"]
    cfg = pipeline.cfg.copy()
    with open_dict(cfg):
        cfg.run_name = name
    return overrides, name, Path(str(OmegaConf.select(cfg, "paths.output_dir")))


def run_training_job(pipeline: Pipeline, key: str, stage_tags: dict[str, str]) -> dict[str, Any]:
    """Run the training job, nested under the pipeline's run and tagged as its train stage."""
    from trainpipe.run_log import PARENT_RUN_ENV, RUN_TAGS_ENV
    from trainpipe.runtime.job_state import JobState
    from trainpipe.tracking.lineage import COMMAND_ENV
    from trainpipe.tracking.model_versions import registered_version

    overrides, run_name, output_dir = training_job(pipeline, key)
    reused = JobState.load(output_dir).status == "complete"
    env = {k: v for k, v in os.environ.items() if k != COMMAND_ENV}  # it records its own command
    env[PARENT_RUN_ENV] = str(pipeline.parent_run_id)
    env[RUN_TAGS_ENV] = json.dumps({k: v for k, v in stage_tags.items() if "parentRunId" not in k})
    command = [sys.executable, "-m", "trainpipe", "train", *overrides]
    code = _wait(subprocess.Popen(command, env=env))
    if code:
        resumable = code in (EXIT_PREEMPTED, EXIT_INTERRUPTED)
        hint = "; rerun the same pipeline command to resume it" if resumable else ""
        raise StageFailed("train", f"`trainpipe train` exited with code {code}{hint}", code)
    state = JobState.load(output_dir)
    model_uri = registered_version(pipeline.tracking_uri, pipeline.model_name, str(state.run_id))
    if model_uri is None:
        raise StageFailed(
            "train",
            f"run {state.run_id} has no registered version of {pipeline.model_name} (tracking "
            f"not sent yet: `trainpipe sync {output_dir}`, then rerun)",
        )
    return {
        "run_id": state.run_id,
        "run_name": run_name,
        "output_dir": str(output_dir),
        "model_uri": model_uri,
        "version": model_uri.rsplit("/", 1)[1],
        "reused_job": reused,  # complete before this pipeline run: nothing was trained
    }


def _wait(job: subprocess.Popen) -> int:
    """The training job's exit code. A stop signal sent to the pipeline meanwhile is passed on:
    the job finishes its step, writes a checkpoint and exits 75 (130 for Ctrl-C), and the same
    pipeline command resumes it (sending it twice, as a terminal's Ctrl-C does, is harmless)."""
    forward = {number: signal.signal(number, lambda n, _: job.send_signal(n)) for number in STOP}
    try:
        return job.wait()
    finally:
        for number, handler in forward.items():
            signal.signal(number, handler)
