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

from trainpipe.callbacks.gpu_metrics import Reader, SampledMetrics, Sampler

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


class CpuSystemMetrics(SampledMetrics):
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

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.at_log_window(trainer):
            return
        for key, value in self.sampler.take().items():
            if value == value:  # NaN: no sample yet
                pl_module.log(f"system/{key}", value, on_step=True, on_epoch=False)
