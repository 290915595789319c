"""How a job ends: one classification of exceptions, used by the job and by the CLI.

| outcome     | what raised it                                   | MLflow run | exit code |
|-------------|--------------------------------------------------|------------|-----------|
| complete    | nothing                                          | FINISHED   | 0         |
| preempted   | `Preempted` (SIGTERM/SIGUSR1, checkpoint written) | KILLED     | 75        |
| interrupted | `Preempted` by SIGINT, `Interrupted`, Ctrl-C     | KILLED     | 130       |
| pruned      | optuna's `TrialPruned` (a sweep stopped a trial)  | KILLED     | sweeper's |
| user error  | `UserError` (bad config or data)                 | FAILED     | 2         |
| failed      | `JobFailed` (e.g. divergence): one line          | FAILED     | 1         |
| error       | anything else (a bug): its traceback             | FAILED     | 1         |

Rerunning the same command resumes a preempted or interrupted job from its last checkpoint.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from trainpipe.errors import USER_ERROR_EXIT_CODE, JobFailed, UserError

# tags that describe how the last attempt ended: a resumed attempt clears them
FAILURE_REASON_TAG = "trainpipe.failure_reason"
FAILURE_TAGS = (FAILURE_REASON_TAG, "trainpipe.preempted", "trainpipe.pruned")

# sysexits EX_TEMPFAIL: "try again" — rerun the same command to resume
EXIT_PREEMPTED = 75
# the shell's code for a process ended by SIGINT (128 + 2)
EXIT_INTERRUPTED = 130


class Preempted(Exception):
    """The job was asked to stop by `signal_name` and saved a checkpoint at `step`."""

    def __init__(self, signal_name: str, step: int) -> None:
        super().__init__(f"{signal_name} received; stopped after step {step} with a checkpoint")
        self.signal_name = signal_name
        self.step = step


class Interrupted(BaseException):
    """A stop signal arrived outside the training loop, where there is nothing to checkpoint.

    A BaseException (like KeyboardInterrupt) so that `except Exception` blocks do not swallow it;
    not a KeyboardInterrupt, which Lightning turns into `sys.exit(1)`.
    """

    def __init__(self, signal_name: str) -> None:
        super().__init__(f"{signal_name} received")
        self.signal_name = signal_name


@dataclass(frozen=True)
class Outcome:
    name: str  # complete | preempted | interrupted | pruned | user_error | failed | error
    run_status: str  # the MLflow run status it maps to
    exit_code: int
    reason: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def resumable(self) -> bool:
        return self.name in ("preempted", "interrupted")


def is_pruned(err: BaseException) -> bool:
    """Whether optuna stopped this trial (optuna is imported only by jobs of an optuna sweep)."""
    optuna = sys.modules.get("optuna")
    return optuna is not None and isinstance(err, optuna.TrialPruned)


def classify(err: BaseException | None) -> Outcome:
    if err is None:
        return Outcome("complete", "FINISHED", 0)
    reason = f"{type(err).__name__}: {err}"
    if isinstance(err, Preempted):
        code = EXIT_INTERRUPTED if err.signal_name == "SIGINT" else EXIT_PREEMPTED
        name = "interrupted" if code == EXIT_INTERRUPTED else "preempted"
        tags = {"trainpipe.preempted": f"{err.signal_name} at step {err.step}"}
        return Outcome(name, "KILLED", code, f"{err}; rerun the same command to resume", tags)
    if isinstance(err, (Interrupted, KeyboardInterrupt)):
        signal_name = getattr(err, "signal_name", "SIGINT")
        code = EXIT_INTERRUPTED if signal_name == "SIGINT" else EXIT_PREEMPTED
        return Outcome("interrupted", "KILLED", code, f"{signal_name} received; rerun to resume")
    if is_pruned(err):
        return Outcome("pruned", "KILLED", 0, reason, {"trainpipe.pruned": "true"})
    if isinstance(err, UserError):
        return Outcome("user_error", "FAILED", USER_ERROR_EXIT_CODE, str(err))
    if isinstance(err, JobFailed):
        return Outcome("failed", "FAILED", err.exit_code, str(err))
    return Outcome("error", "FAILED", 1, reason)
