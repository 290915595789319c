"""GPU system metrics of the GPUs this job trains on: utilisation, memory and power.

MLflow's own system-metrics monitor samples every GPU of the machine, including other jobs'. Here
each rank samples only its own device (NVML through torch.cuda, on a background thread every
`interval_s`), and at every log window (`trainer.log_every_n_steps`, when the loggers write
anyway) the ranks' means since the previous window are gathered and logged as MLflow names them,
per rank: `system/gpu_<rank>_utilization_percentage`, `…_memory_usage_megabytes`,
`…_memory_usage_percentage`, `…_power_usage_watts`. MLflow's UI shows `system/*` metrics in its
System metrics tab. Nothing is sampled on the CPU or when NVML (nvidia-ml-py) is missing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

FIELDS = (
    "utilization_percentage",
    "memory_usage_megabytes",
    "memory_usage_percentage",
    "power_usage_watts",
)
Reader = Callable[[], dict[str, float]]


def nvml_reader(device: torch.device) -> Reader | None:
    """A function sampling `device` through NVML, or None if NVML cannot be used."""
    try:
        torch.cuda.utilization(device)  # imports pynvml and finds the device, or raises
    except Exception:  # no nvidia-ml-py, no driver, or a device NVML does not know (MIG)
        return None
    total = torch.cuda.get_device_properties(device).total_memory

    def read() -> dict[str, float]:
        used = torch.cuda.device_memory_used(device)
        return {
            "utilization_percentage": float(torch.cuda.utilization(device)),
            "memory_usage_megabytes": used / 2**20,
            "memory_usage_percentage": 100.0 * used / total,
            "power_usage_watts": torch.cuda.power_draw(device) / 1000.0,
        }

    return read


class Sampler:
    """Calls `read` every `interval_s` on a daemon thread; `take()` gives the means of `fields`
    since the last `take()` (NaN before the first sample)."""

    def __init__(
        self,
        read: Reader,
        interval_s: float,
        fields: tuple[str, ...] = FIELDS,
        name: str = "gpu-metrics",
    ) -> None:
        self.read = read
        self.interval_s = interval_s
        self.fields = fields
        self._sums = dict.fromkeys(fields, 0.0)
        self._count = 0
        self._last: dict[str, float] = dict.fromkeys(fields, float("nan"))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_s + 1)

    def sample(self) -> None:
        try:
            values = self.read()
        except Exception:  # a failed NVML read loses one sample, never the job
            return
        with self._lock:
            for key in self.fields:
                self._sums[key] += values[key]
            self._count += 1

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval_s):
                return

    def take(self) -> dict[str, float]:
        """Means since the last call; the last means again if no sample arrived in between."""
        with self._lock:
            if self._count:
                self._last = {key: self._sums[key] / self._count for key in self.fields}
                self._sums, self._count = dict.fromkeys(self.fields, 0.0), 0
            return dict(self._last)


class SampledMetrics(Callback):
    """A `Sampler` that a subclass starts in `on_fit_start` (or not), whose means it logs when
    `at_log_window`; stopped with the fit, however the fit ends."""

    def __init__(self, interval_s: float = 5.0, reader: Reader | None = None) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self._reader = reader  # tests hand one in; else the subclass's own
        self.sampler: Sampler | None = None
        self._step_at_start = -1

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        self._step_at_start = trainer.global_step

    def at_log_window(self, trainer: Any) -> bool:
        """Whether this batch ends where Lightning flushes step metrics: after an optimizer step
        (not mid-accumulation) at a multiple of `log_every_n_steps`, with a sampler running."""
        every, step = trainer.log_every_n_steps, trainer.global_step
        return (
            self.sampler is not None
            and bool(every)
            and step % every == 0
            and step != self._step_at_start
        )

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._stop()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler = None


class GpuSystemMetrics(SampledMetrics):
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        device = trainer.strategy.root_device
        read = self._reader or (nvml_reader(device) if device.type == "cuda" else None)
        # every rank must take part in the gather below, or none: agree once, at the start
        if trainer.strategy.reduce_boolean_decision(read is not None, all=True):
            self.sampler = Sampler(read, self.interval_s)
            self.sampler.start()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.at_log_window(trainer):
            return
        mine = torch.tensor([self.sampler.take()[key] for key in FIELDS], dtype=torch.float64)
        ranks = trainer.strategy.all_gather(mine.to(pl_module.device)).reshape(-1, len(FIELDS))
        for rank, row in enumerate(ranks.cpu().tolist()):
            for key, value in zip(FIELDS, row, strict=True):
                if value == value:  # NaN: that rank has no sample yet
                    pl_module.log(f"system/gpu_{rank}_{key}", value, on_step=True, on_epoch=False)
