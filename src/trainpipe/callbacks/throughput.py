"""Steady-state training throughput and MFU: step time, samples/s, tokens/s, data wait.

A step is one optimizer step, timed from the end of the train batch before it to the end of its
last (micro-)batch: fetching batches, forward/backward/optimizer and every hook in between. The
data wait is the part between the end of one train batch and the start of the next (fetching
and moving the batch, plus Lightning's own per-batch bookkeeping). Excluded: the first
`warmup_steps` optimizer steps of the fit, and any step with an interval that spans an epoch
start (iterator setup) or a validation run.

Clocks: on CUDA, `torch.cuda.Event`s recorded at the batch boundaries on the current stream, read
only when a log window closes (one synchronisation per window), so the steady state never
waits for the GPU; the times are then GPU-timeline times, and the data wait is how long the GPU
sat idle for the next batch. Elsewhere `time.perf_counter`. Per batch the cost is two clock marks
(on CUDA two event records), one `time.process_time` read and a few appends.

Every `trainer.log_every_n_steps` optimizer steps (Lightning's own cadence, so the values reach
the loggers) it logs the window's `perf/step_time_ms` (mean; under DDP the mean over ranks),
`perf/samples_per_s` and `perf/tokens_per_s` (summed over ranks: the job's throughput),
`perf/data_wait_frac`, `perf/mfu` (mean over ranks; only when both FLOPs per token and a peak are
known) and, on CUDA, `perf/gpu_mem_peak_gib` (max over ranks). Tokens per batch come from
`pl_module.tokens_in_batch(batch)` if defined (count from shapes: a `.item()` there would
synchronise every step), else the batch's rows; FLOPs per token from `pl_module.flops_per_token`
(a number or a zero-argument method). `summary()` describes this process's whole fit; with
`output_path` set, rank 0 writes it there as JSON when the fit ends (the benchmarks read it).

What MFU was computed against is logged once, as params of a fit that starts from step 0:
`perf.mfu_peak_tflops` ("none": no MFU), `perf.mfu_peak_source` (override | table | none),
`perf.mfu_device` and `perf.mfu_flops_per_tok` ("token" in a param name would be masked as a
secret, tracking/params.py). The config's `perf.peak_tflops` and `perf.device` are params
already and MLflow refuses to change a param: hence other names, and nothing is logged again by
a resumed fit, which may run on another GPU.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from trainpipe.callbacks.clocks import EventClock, HostClock, seconds_since_process_start
from trainpipe.perf import peaks

GIB = 2**30
# without log windows (log_every_n_steps=0) read the clocks every this many steps anyway, so an
# epoch of 100k steps does not hold 200k CUDA events
_MAX_PENDING = 1000


def _batch_size(batch: Any) -> int:
    """Rows in a batch: the leading dimension of its first tensor (tuple, list or dict batches)."""
    if isinstance(batch, dict):
        batch = next(iter(batch.values()), None)
    while isinstance(batch, (list, tuple)) and batch:
        batch = batch[0]
    shape = getattr(batch, "shape", None)
    return int(shape[0]) if shape else 1


def _clock_for(device: torch.device) -> HostClock | EventClock:
    return EventClock() if device.type == "cuda" else HostClock()


@dataclass
class _Step:
    """One optimizer step awaiting its clock readings: (previous end, start, end) per batch."""

    marks: list[tuple[Any, Any, Any]]
    rows: int
    tokens: int
    cpu_s: float


def _tf32_matmuls() -> bool:
    """Whether fp32 matmuls on CUDA may use TF32 (torch's new and legacy flags both honoured)."""
    try:
        precision = getattr(torch.backends.cuda.matmul, "fp32_precision", "none")  # torch >= 2.9
        if precision in ("tf32", "ieee"):
            return precision == "tf32"
        return bool(torch.backends.cuda.matmul.allow_tf32)
    except (RuntimeError, AttributeError):  # legacy and new APIs mixed: torch refuses to say
        return torch.get_float32_matmul_precision() != "highest"


def _flops_per_token(pl_module: Any) -> float | None:
    value = getattr(pl_module, "flops_per_token", None)
    if callable(value):
        value = value()
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


class ThroughputMonitor(Callback):
    """Times optimizer steps; logs throughput, data wait and MFU every `log_every_n_steps`.

    `peak_tflops`: dense peak per device for MFU; None looks the device up in
    `trainpipe.perf.peaks` (CUDA only). After `on_fit_start`, `peak_tflops` holds the peak in use
    and `peak_source` says where it came from ("override", "table" or None: no MFU).
    """

    def __init__(
        self,
        warmup_steps: int = 5,
        output_path: str | None = None,
        peak_tflops: float | None = None,
    ) -> None:
        self.warmup_steps = warmup_steps
        self.output_path = output_path
        self._peak_override = peak_tflops
        self.peak_tflops: float | None = peak_tflops
        self.peak_source: str | None = "override" if peak_tflops is not None else None
        self.flops_per_token: float | None = None
        self.device_name: str | None = None
        self.gpu_mem_peak_gib: float | None = None
        # measured steady-state steps of the whole fit, in seconds
        self.step_times_s: list[float] = []
        self.batch_times_s: list[float] = []  # on_train_batch_start → on_train_batch_end, summed
        self.wait_times_s: list[float] = []  # end of one batch → start of the next, summed
        self.step_rows: list[int] = []
        self.step_tokens: list[int] = []
        self.cpu_time_s = 0.0  # process CPU time (all threads) spent in those steps
        self.epochs: list[dict[str, Any]] = []
        self.first_step_unix: float | None = None  # time.time() when the first train batch started
        self.first_step_since_process_start_s: float | None = None
        self.first_step_s: float | None = None  # the first optimizer step, compilation included
        self._first_started = 0.0
        self._clock: HostClock | EventClock = HostClock()
        self._device = torch.device("cpu")
        self._pending: list[_Step] = []  # measured steps whose marks are not read yet
        self._parts: list[tuple[Any, Any, Any]] = []  # the current step's batches so far
        self._part_rows = self._part_tokens = 0
        self._part_cpu = 0.0
        self._step_complete = True  # no batch of the current step followed an excluded gap
        self._steps_seen = 0
        self._previous_end: Any = None
        self._previous_cpu = 0.0
        self._batch_start: Any = None
        self._global_step_at_start = 0
        self._window_first = 0  # index into step_times_s where the open log window begins
        self._epoch_first = 0

    # -- setup ----------------------------------------------------------------------------
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._device = trainer.strategy.root_device
        self._clock = _clock_for(self._device)
        self.flops_per_token = _flops_per_token(pl_module)
        if self._device.type == "cuda":
            self.device_name = torch.cuda.get_device_name(self._device)
        if self._peak_override is not None:
            self.peak_tflops, self.peak_source = self._peak_override, "override"
        elif self.device_name is not None:
            tf32 = _tf32_matmuls()
            self.peak_tflops = peaks.peak_tflops(self.device_name, trainer.precision, tf32=tf32)
            self.peak_source = "table" if self.peak_tflops is not None else None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.global_step > 0:  # resumed: the first attempt logged them (see above)
            return
        peak, flops = self.peak_tflops, self.flops_per_token
        params = {
            "perf.mfu_peak_tflops": "none" if peak is None else f"{peak:g}",
            "perf.mfu_peak_source": self.peak_source or "none",
            "perf.mfu_device": self.device_name or self._device.type,
            "perf.mfu_flops_per_tok": "none" if flops is None else f"{flops:g}",
        }
        for logger in trainer.loggers:
            logger.log_hyperparams(params)

    # -- timing (no host-device synchronisation in here) ----------------------------------
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._previous_end = None
        self._epoch_first = len(self.step_times_s) + len(self._pending)

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._previous_end = None  # mid-epoch validation: the next interval is not a train step

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        self._batch_start = self._clock.mark()
        self._global_step_at_start = trainer.global_step
        if self.first_step_unix is None:
            self.first_step_unix = time.time()
            self.first_step_since_process_start_s = seconds_since_process_start()
            self._first_started = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        end, cpu = self._clock.mark(), time.process_time()
        if self._previous_end is None:
            self._step_complete = False
        else:
            self._parts.append((self._previous_end, self._batch_start, end))
            self._part_cpu += cpu - self._previous_cpu
            rows = _batch_size(batch)
            self._part_rows += rows
            count = getattr(pl_module, "tokens_in_batch", None)
            self._part_tokens += int(count(batch)) if callable(count) else rows
        self._previous_end, self._previous_cpu = end, cpu
        if trainer.global_step == self._global_step_at_start:
            return  # accumulating gradients: the optimizer step is not over yet
        self._steps_seen += 1
        if self.first_step_s is None:
            if self._device.type == "cuda":  # once per fit: the first step is not steady state
                torch.cuda.synchronize(self._device)
            self.first_step_s = time.perf_counter() - self._first_started
        if self._step_complete and self._steps_seen > self.warmup_steps:
            step = _Step(self._parts, self._part_rows, self._part_tokens, self._part_cpu)
            self._pending.append(step)
        self._parts, self._part_rows, self._part_tokens, self._part_cpu = [], 0, 0, 0.0
        self._step_complete = True
        every = trainer.log_every_n_steps
        if every > 0 and trainer.global_step % every == 0:  # when Lightning flushes step metrics
            self._log_window(pl_module)
        elif len(self._pending) >= _MAX_PENDING:
            self._resolve()

    # -- reading the clocks ---------------------------------------------------------------
    def _resolve(self) -> None:
        """Read the pending steps' marks (on CUDA: one wait for the last event)."""
        if not self._pending:
            return
        self._clock.wait(self._pending[-1].marks[-1][2])
        for step in self._pending:
            seconds = self._clock.seconds
            self.step_times_s.append(sum(seconds(prev, end) for prev, _, end in step.marks))
            self.wait_times_s.append(sum(seconds(prev, start) for prev, start, _ in step.marks))
            self.batch_times_s.append(sum(seconds(start, end) for _, start, end in step.marks))
            self.step_rows.append(step.rows)
            self.step_tokens.append(step.tokens)
            self.cpu_time_s += step.cpu_s
        self._pending = []
        if self._device.type == "cuda":
            self.gpu_mem_peak_gib = torch.cuda.max_memory_allocated(self._device) / GIB

    def _rates(self, first: int) -> dict[str, float]:
        """Throughput of the measured steps from index `first` on (empty if none)."""
        total = sum(self.step_times_s[first:])
        if total <= 0:
            return {}
        rates = {
            "step_time_ms": 1000 * total / len(self.step_times_s[first:]),
            "samples_per_s": sum(self.step_rows[first:]) / total,
            "tokens_per_s": sum(self.step_tokens[first:]) / total,
            "data_wait_frac": min(1.0, max(0.0, sum(self.wait_times_s[first:]) / total)),
        }
        if self.flops_per_token is not None and self.peak_tflops:
            peak = self.peak_tflops * 1e12
            rates["mfu"] = rates["tokens_per_s"] * self.flops_per_token / peak
        return rates

    def _log_window(self, pl_module: Any) -> None:
        self._resolve()
        rates = self._rates(self._window_first)
        self._window_first = len(self.step_times_s)
        if not rates:
            return  # every rank took the same steps, so every rank skips this window alike
        if self.gpu_mem_peak_gib is not None:
            rates["gpu_mem_peak_gib"] = self.gpu_mem_peak_gib
        reduce = {"samples_per_s": "sum", "tokens_per_s": "sum", "gpu_mem_peak_gib": "max"}
        for key, value in rates.items():
            pl_module.log(
                f"perf/{key}",
                value,
                on_step=True,
                on_epoch=False,
                sync_dist=True,
                reduce_fx=reduce.get(key, "mean"),
            )

    # -- epoch and fit ends ---------------------------------------------------------------
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._resolve()
        first = self._epoch_first
        steps = self.step_times_s[first:]
        if not steps:
            return
        rates = self._rates(first)
        epoch = {"epoch": trainer.current_epoch, "steps": len(steps)}
        epoch["step_time_ms"] = 1000 * statistics.median(steps)
        for key in ("samples_per_s", "tokens_per_s", "data_wait_frac"):
            epoch[key] = rates.get(key, 0.0)
        self.epochs.append(epoch)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._resolve()
        if self.output_path and trainer.is_global_zero:
            path = Path(self.output_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.summary(), indent=2))

    # -- results --------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The whole fit's steady-state numbers on this process (None where nothing was measured)."""
        self._resolve()
        steps, batches = self.step_times_s, self.batch_times_s
        rates = self._rates(0)
        return {
            "warmup_steps": self.warmup_steps,
            "steps_measured": len(steps),
            "step_time_ms_median": 1000 * statistics.median(steps) if steps else None,
            "step_time_ms_mean": rates.get("step_time_ms"),
            "batch_time_ms_median": 1000 * statistics.median(batches) if batches else None,
            # CPU time per step, all threads (background writers and torch's spinning worker
            # threads included): where the time goes when wall time is disturbed by other processes
            "cpu_time_ms_mean": 1000 * self.cpu_time_s / len(steps) if steps else None,
            "samples_per_s": rates.get("samples_per_s"),
            "tokens_per_s": rates.get("tokens_per_s"),
            "data_wait_frac": rates.get("data_wait_frac"),
            "mfu": rates.get("mfu"),
            "flops_per_token": self.flops_per_token,
            "peak_tflops": self.peak_tflops,
            "peak_source": self.peak_source,
            "device_name": self.device_name,
            "gpu_mem_peak_gib": self.gpu_mem_peak_gib,
            "first_step_unix": self.first_step_unix,
            "first_step_since_process_start_s": self.first_step_since_process_start_s,
            "first_step_s": self.first_step_s,
            "epochs": self.epochs,
        }
