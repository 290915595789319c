"""What a run prints: trainpipe's own lines, library warnings that matter, nothing twice.

Hydra's job logging (configs/hydra/job_logging/trainpipe.yaml) sends libraries' INFO lines to
the job's log file only. This module handles what that config cannot: the console handler that
`lightning` installs when it is imported, noisy warnings, `datasets`' progress bars, and what
must reach the job's log file although it was printed before the file existed (the plan's lines)
or in another form (the summary panel, a failed job's traceback).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

LOGGER = "trainpipe"

# library warnings that say nothing to a trainpipe user (each explained)
SILENCED_WARNINGS = (
    # MLflow: integer class labels in the output schema cannot be null; they never are
    r"Hint: Inferred schema contains integer column",
    # Lightning 2.6 calls a torch pytree API torch itself deprecated
    r".*isinstance\(treespec, LeafSpec\)",
)


def first_of(names: Sequence[str], most: int) -> str:
    """The first `most` names, comma-separated, and how many more: a summary stays one line."""
    more = len(names) - most
    return ", ".join(names[:most]) + (f" … (+{more})" if more > 0 else "")


def quiet_environment() -> None:
    """Before the libraries are imported: no `datasets` progress bars (the data layer logs one
    summary line instead), MLflow's INFO lines ("Creating initial MLflow database tables") and
    its "Downloading artifacts" bars (loading a registered model) off."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def quiet_libraries() -> None:
    """Call once lightning is imported: its own console handler goes (its lines reach the job's
    log through Hydra's handlers instead of being printed twice), and so do silenced warnings."""
    import lightning

    logging.getLogger("lightning").removeHandler(lightning._console)
    for pattern in SILENCED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


class EarlyLines(logging.Handler):
    """trainpipe's lines from before Hydra configures the job's logging (the plan's data
    summary), kept for the job's log file. Hydra's logging config replaces the logger's handlers,
    this one included, so it holds only those lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_early = EarlyLines()


def log_before_hydra() -> None:
    """Until Hydra configures the job's logging: trainpipe's lines on stdout, and kept."""
    log = logging.getLogger(LOGGER)
    if not log.handlers:
        log.addHandler(logging.StreamHandler(sys.stdout))
        log.setLevel(logging.INFO)
    log.addHandler(_early)


def replay_early_lines() -> None:
    """Write the lines kept by `log_before_hydra` into the job's log file (once)."""
    for record in _early.records:
        _to_log_files(record)
    _early.records.clear()


def to_log_file(message: str, level: int = logging.INFO, exc_info: Any = None) -> None:
    """A line (and a traceback) for the job's log file only: the console had it in its own form."""
    log = logging.getLogger(LOGGER)
    if exc_info is not None and not isinstance(exc_info, tuple):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    _to_log_files(log.makeRecord(LOGGER, level, __file__, 0, message, None, exc_info))


def _to_log_files(record: logging.LogRecord) -> None:
    for handler in logging.getLogger(LOGGER).handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
