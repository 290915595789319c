"""One job in its output dir: its state file, its tracker, rank-0 gating and the failure policy.

    job = Job(output_dir, tracker, StopSignals(...))
    with job:                      # stop signals routed to the job; any exception is classified
        job.start(run_name, tags, params, config_yaml)
        ...                        # build, fit, test, register
        job.finish()               # the run is FINISHED (tracking sent, or kept for later)
        job.complete(summary)      # job.json says so: a rerun reports it instead of retraining

Leaving the block with an exception closes the MLflow run with the status the failure policy
(runtime/failures.py) gives it — FAILED, or KILLED for a preempted, interrupted or pruned job —
records it in job.json, and re-raises: the CLI turns it into the exit code. Only rank 0 writes
job.json; the tracker of other ranks records nothing.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any

from trainpipe.runtime.atomic import atomic_write_text
from trainpipe.runtime.failures import FAILURE_TAGS, classify
from trainpipe.runtime.job_state import JobState
from trainpipe.runtime.ranks import is_rank_zero
from trainpipe.runtime.signals import StopSignals
from trainpipe.runtime.tracker import Tracker

log = logging.getLogger(__name__)


class Job:
    def __init__(
        self, output_dir: Path, tracker: Tracker, signals: StopSignals, requeue: str = "never"
    ) -> None:
        self.output_dir = Path(output_dir)
        self.tracker = tracker
        self.signals = signals
        self.requeue = requeue  # auto: `scontrol requeue` a preempted SLURM job
        self.rank_zero = is_rank_zero()
        self.state = JobState.load(self.output_dir)
        self._started = False

    @property
    def is_complete(self) -> bool:
        return self.state.status == "complete"

    def __enter__(self) -> Job:
        self.signals.install()
        return self

    def start(
        self, run_name: str, tags: dict[str, str], params: dict[str, str], config_yaml: str
    ) -> str | None:
        """Open (or continue) the job's run and record what it is; returns the MLflow run id."""
        run_id = self.tracker.start(run_name, tags, journal_dir=self.output_dir / "tracking")
        self._started = True
        if self.state.status not in ("new", "running", "complete"):  # a resumed attempt
            self.tracker.delete_tags(FAILURE_TAGS)
        if self.rank_zero:
            self._save(JobState(run_id=run_id, status="running"))
            self.tracker.log_params(params)
            config = atomic_write_text(self.output_dir / "config.yaml", config_yaml)
            self.tracker.log_artifact(config)
        return run_id

    def finish(self) -> int:
        """Close the run as FINISHED; returns how many tracking writes are still unsent."""
        return self.tracker.finish("FINISHED")

    def complete(self, summary: dict[str, Any], identity: dict[str, str] | None = None) -> None:
        """Mark the job complete in job.json, with the summary a rerun prints."""
        if self.rank_zero:
            state = JobState(self.tracker.run_id, "complete", summary, identity or {})
            self._save(state)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        self.signals.restore()
        if exc is None or not self._started:
            return False  # nothing recorded yet: nothing to close
        outcome = classify(exc)
        if outcome.tags:
            self.tracker.set_tags(outcome.tags)
        self.tracker.finish(outcome.run_status, reason=outcome.reason)
        if self.rank_zero:
            self._save(JobState(run_id=self.tracker.run_id, status=outcome.name))
            if outcome.name == "preempted" and self.requeue == "auto":
                requeue_slurm_job()
        return False

    def _save(self, state: JobState) -> None:
        self.state = state
        state.save(self.output_dir)


def requeue_slurm_job() -> None:
    """Put this SLURM job back in the queue; it resumes from its checkpoint when it starts again."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return
    result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    if result.returncode == 0:
        log.info("requeued SLURM job %s", job_id)
    else:
        log.warning("`scontrol requeue %s` failed: %s", job_id, result.stderr.strip())
