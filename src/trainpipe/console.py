"""What a run prints: trainpipe's own lines, library warnings that matter, nothing twice.

Hydra's job logging (configs/hydra/job_logging/trainpipe.yaml) sends libraries' INFO lines to
the job's log file only. This module handles what that config cannot: the console handler that
`lightning` installs when it is imported, noisy warnings, and `datasets`' progress bars.
"""

from __future__ import annotations

import logging
import os
import warnings

# library warnings that say nothing to a trainpipe user (each explained)
SILENCED_WARNINGS = (
    # MLflow: integer class labels in the output schema cannot be null; they never are
    r"Hint: Inferred schema contains integer column",
    # Lightning 2.6 calls a torch pytree API torch itself deprecated
    r".*isinstance\(treespec, LeafSpec\)",
)


def quiet_environment() -> None:
    """Before the libraries are imported: no `datasets` progress bars (the data layer logs one
    summary line instead), MLflow's INFO lines ("Creating initial MLflow database tables") off."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def quiet_libraries() -> None:
    """Call once lightning is imported: its own console handler goes (its lines reach the job's
    log through Hydra's handlers instead of being printed twice), and so do silenced warnings."""
    import lightning

    logging.getLogger("lightning").removeHandler(lightning._console)
    for pattern in SILENCED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
