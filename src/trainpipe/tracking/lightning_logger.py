"""Lightning's logger interface in front of the job's tracker (rank 0 only)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from trainpipe.tracking.params import flatten


class TrackerLogger(Logger):
    """Forwards `self.log(...)` metrics and callbacks' params to the job's tracker.

    The runner logs the resolved config as params itself; `log_hyperparams` carries what only
    the fit knows (e.g. the peak TFLOP/s behind perf/mfu, callbacks/throughput.py). Lightning
    also calls it with the module's `save_hyperparameters()` values, empty for our modules.
    """

    def __init__(self, tracker: Any) -> None:
        super().__init__()
        self.tracker = tracker

    @property
    def name(self) -> str:
        return self.tracker.experiment_name

    @property
    def version(self) -> str:
        return self.tracker.run_id or ""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if k != "epoch"}
        if metrics:
            self.tracker.log_metrics(metrics, step=step or 0)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        values = params if isinstance(params, dict) else vars(params)  # dict or Namespace
        if values:
            self.tracker.log_params(flatten(values))

    @rank_zero_only
    def finalize(self, status: str) -> None:
        pass  # the runner closes the run (tracker.finish) once test and registration are done
