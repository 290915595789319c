"""Steady-state training throughput: wall time per train step, data loading included.

A step is timed from the end of one train batch to the end of the next, so it covers fetching
the batch (the gap between batches) plus forward/backward/optimizer and every hook in between.
Excluded: the first `warmup_steps` batches of the fit, the first batch of each epoch (its interval
would include iterator setup and the previous validation round) and any interval that spans a
validation run. The cost per batch: three clock reads (`time.perf_counter`, `time.process_time`)
and two list appends.

Per epoch it logs `perf/step_time_ms` (median step; under DDP the mean over ranks) and
`perf/samples_per_s` (samples over the summed step times; under DDP the sum over ranks, i.e. the
job's throughput). `summary()` describes this process's whole fit; with `output_path` set, rank 0
writes it there as JSON when the fit ends (the benchmarks read that file).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback


def _batch_size(batch: Any) -> int:
    """Rows in a batch: the leading dimension of its first tensor (tuple, list or dict batches)."""
    if isinstance(batch, dict):
        batch = next(iter(batch.values()), None)
    while isinstance(batch, (list, tuple)) and batch:
        batch = batch[0]
    shape = getattr(batch, "shape", None)
    return int(shape[0]) if shape else 1


def seconds_since_process_start() -> float | None:
    """Age of this process (Linux, 1/CLK_TCK ≈ 10 ms resolution); None where /proc is unavailable."""
    try:
        stat = Path("/proc/self/stat").read_text()
        # the 22nd field (starttime, clock ticks since boot); the name in (…) may contain spaces
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class ThroughputMonitor(Callback):
    """Times train steps and logs `perf/step_time_ms` and `perf/samples_per_s` once per epoch."""

    def __init__(self, warmup_steps: int = 5, output_path: str | None = None) -> None:
        self.warmup_steps = warmup_steps
        self.output_path = output_path
        # steady-state steps of the whole fit: wall time, and the batch hooks' share of it
        self.step_times_s: list[float] = []
        self.batch_times_s: list[float] = []  # on_train_batch_start → on_train_batch_end
        self.cpu_time_s = 0.0  # process CPU time (all threads) spent in those steps
        self.samples = 0  # rows in the measured steps
        self.epochs: list[dict[str, float]] = []
        self.first_step_unix: float | None = None  # time.time() when the first train batch started
        self.first_step_since_process_start_s: float | None = None
        self._seen = 0
        self._previous_end: float | None = None
        self._previous_cpu = 0.0
        self._batch_start = 0.0
        self._epoch_first = 0  # index into step_times_s where this epoch's steps begin
        self._epoch_samples = 0

    # -- timing ---------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._previous_end = None
        self._epoch_first = len(self.step_times_s)
        self._epoch_samples = 0

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        self._batch_start = time.perf_counter()
        if self.first_step_unix is None:
            self.first_step_unix = time.time()
            self.first_step_since_process_start_s = seconds_since_process_start()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self._seen += 1
        if self._previous_end is not None and self._seen > self.warmup_steps:
            self.step_times_s.append(now - self._previous_end)
            self.batch_times_s.append(now - self._batch_start)
            self.cpu_time_s += cpu - self._previous_cpu
            rows = _batch_size(batch)
            self.samples += rows
            self._epoch_samples += rows
        self._previous_end, self._previous_cpu = now, cpu

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._previous_end = None  # mid-epoch validation: the next interval is not a train step

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        steps = self.step_times_s[self._epoch_first :]
        if not steps:
            return
        total = sum(steps)
        epoch = {
            "epoch": trainer.current_epoch,
            "steps": len(steps),
            "step_time_ms": 1000 * statistics.median(steps),
            "samples_per_s": self._epoch_samples / total if total > 0 else 0.0,
        }
        self.epochs.append(epoch)
        # every rank takes the same steps, so every rank gets here: mean step time, total samples/s
        pl_module.log(
            "perf/step_time_ms", epoch["step_time_ms"], on_step=False, on_epoch=True, sync_dist=True
        )
        pl_module.log(
            "perf/samples_per_s",
            epoch["samples_per_s"],
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            reduce_fx="sum",
        )

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self.output_path and trainer.is_global_zero:
            path = Path(self.output_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.summary(), indent=2))

    # -- results --------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The whole fit's steady-state numbers (None where nothing was measured)."""
        steps, batches = self.step_times_s, self.batch_times_s
        total = sum(steps)
        return {
            "warmup_steps": self.warmup_steps,
            "steps_measured": len(steps),
            "step_time_ms_median": 1000 * statistics.median(steps) if steps else None,
            "step_time_ms_mean": 1000 * total / len(steps) if steps else None,
            "batch_time_ms_median": 1000 * statistics.median(batches) if batches else None,
            # CPU time per step, all threads (background writers and torch's spinning worker
            # threads included): where the time goes when wall time is disturbed by other processes
            "cpu_time_ms_mean": 1000 * self.cpu_time_s / len(steps) if steps else None,
            "samples_per_s": self.samples / total if total > 0 else None,
            "first_step_unix": self.first_step_unix,
            "first_step_since_process_start_s": self.first_step_since_process_start_s,
            "epochs": self.epochs,
        }
