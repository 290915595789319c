"""CPU and memory use of the machine a job runs on, in MLflow's System metrics tab.

Sampled with psutil on a background thread every `interval_s` and logged through the job's tracker
(journaled, like every metric) at each log window (`trainer.log_every_n_steps`) as the means since
the previous window, under the names and units of MLflow's system-metrics logging (its CPUMonitor):
`system/cpu_utilization_percentage`, `system/system_memory_usage_megabytes` (10^6 bytes),
`system/system_memory_usage_percentage`. MLflow's own monitor (`log_system_metrics`) does not fit:
it writes to MLflow from its own thread, past the journal, samples every GPU of the machine
(gpu_metrics.py logs this job's own), and importing it imports MLflow (seconds, in a run with
`logger=none`). Only global rank 0 samples: the ranks of one machine would report the same
numbers. Without psutil nothing is sampled.
"""

from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch.callbacks import Callback

from trainpipe.callbacks.gpu_metrics import Reader, Sampler

log = logging.getLogger(__name__)

FIELDS = (
    "cpu_utilization_percentage",
    "system_memory_usage_megabytes",
    "system_memory_usage_percentage",
)


def psutil_reader() -> Reader | None:
    """A function sampling CPU and memory (as MLflow's CPUMonitor does), or None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    psutil.cpu_percent()  # the first reading is 0.0: it starts the interval the next one covers

    def read() -> dict[str, float]:
        memory = psutil.virtual_memory()
        return {
            "cpu_utilization_percentage": psutil.cpu_percent(),
            "system_memory_usage_megabytes": memory.used / 1e6,
            "system_memory_usage_percentage": 100.0 * memory.used / memory.total,
        }

    return read


class CpuSystemMetrics(Callback):
    def __init__(self, interval_s: float = 5.0, reader: Reader | None = None) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self._reader = reader  # tests hand one in; else psutil
        self.sampler: Sampler | None = None
        self._step_at_start = -1

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        read = self._reader or psutil_reader()
        if read is None:
            log.debug("no CPU system metrics: psutil is not installed")
            return
        self.sampler = Sampler(read, self.interval_s, FIELDS, name="cpu-metrics")
        self.sampler.sample()  # a short run still logs a value at its first window
        self.sampler.start()

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        self._step_at_start = trainer.global_step

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        every, step = trainer.log_every_n_steps, trainer.global_step
        # log where Lightning flushes step metrics: after an optimizer step (not mid-accumulation)
        if self.sampler is None or not every or step % every or step == self._step_at_start:
            return
        for key, value in self.sampler.take().items():
            if value == value:  # NaN: no sample yet
                pl_module.log(f"system/{key}", value, on_step=True, on_epoch=False)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._stop()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler = None
