"""The parts of the GPU path that run on a CPU too: batches cut from device-resident tensors equal
the numpy path's, the GPU-metrics sampler and callback, the time-gated progress bar, and the params
that say what MFU was computed against."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.unit.test_throughput import TinyLM, fit
from trainpipe.callbacks import progress
from trainpipe.callbacks.gpu_metrics import FIELDS, GpuSystemMetrics, Sampler
from trainpipe.callbacks.progress import TimedProgressBar
from trainpipe.callbacks.throughput import ThroughputMonitor
from trainpipe.data.loader import fits_on_device, place_on
from trainpipe.data.windows import window_loader
from trainpipe.tracking.lightning_logger import TrackerLogger

CPU = torch.device("cpu")


def batches(loader: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def test_windows_cut_from_a_device_tensor_equal_the_numpy_ones() -> None:
    tokens = np.arange(1000, dtype=np.uint16) % 251
    host = window_loader(tokens, seq_len=16, batch_size=4, shuffle=True, seed=3)
    resident = window_loader(tokens, seq_len=16, batch_size=4, shuffle=True, seed=3)
    resident.dataset.to_device(CPU)  # the tensor path (torch gathers), on the CPU
    assert isinstance(resident.dataset.tokens, torch.Tensor)
    for (hx, hy), (rx, ry) in zip(batches(host), batches(resident), strict=True):
        assert rx.dtype == torch.int64 and torch.equal(hx, rx) and torch.equal(hy, ry)


def test_table_rows_gathered_from_device_tensors_equal_the_numpy_ones(workdir: Path) -> None:
    from trainpipe.config.compose import compose
    from trainpipe.config.validate import resolve
    from trainpipe.data.loader import batch_loader
    from trainpipe.data.tables import prepare_table

    conf = resolve(compose("train", [f"paths.cache_dir={workdir}/cache"]))
    split = prepare_table(conf["data"], "classes").splits["train"]
    host = batch_loader(split, 64, shuffle=True, seed=0)
    resident = batch_loader(split, 64, shuffle=True, seed=0)
    resident.dataset.to_device(CPU)
    assert resident.dataset.nbytes > 0
    for (hx, hy), (rx, ry) in zip(batches(host), batches(resident), strict=True):
        assert torch.equal(hx, rx) and torch.equal(hy, ry) and ry.dtype == torch.int64


def test_placement_leaves_cpu_loaders_alone() -> None:
    loader = window_loader(np.arange(200), seq_len=8, batch_size=2, shuffle=False, seed=0)
    assert place_on(loader, CPU) is loader and not loader.pin_memory
    assert not fits_on_device(1, CPU)


def test_sampler_averages_between_takes_and_repeats_the_last_without_new_samples() -> None:
    values = iter([1.0, 3.0, 10.0])
    sampler = Sampler(lambda: dict.fromkeys(FIELDS, next(values)), interval_s=60)
    assert all(v != v for v in sampler.take().values())  # NaN: nothing sampled yet
    sampler.sample()
    sampler.sample()
    assert sampler.take() == dict.fromkeys(FIELDS, 2.0)
    assert sampler.take() == dict.fromkeys(FIELDS, 2.0)
    sampler.sample()
    assert sampler.take() == dict.fromkeys(FIELDS, 10.0)


def test_sampler_thread_samples_until_stopped() -> None:
    calls = []
    sampler = Sampler(lambda: calls.append(1) or dict.fromkeys(FIELDS, 5.0), interval_s=0.01)
    sampler.start()
    time.sleep(0.1)
    sampler.stop()
    seen = len(calls)
    time.sleep(0.05)
    assert seen >= 2 and len(calls) == seen
    assert sampler.take()["power_usage_watts"] == 5.0


def test_gpu_metrics_are_logged_per_rank_at_log_windows_only(tmp_path: Path) -> None:
    gpu = GpuSystemMetrics(interval_s=0.001, reader=lambda: dict.fromkeys(FIELDS, 7.0))
    monitor = ThroughputMonitor(warmup_steps=1)
    _, logger = fit(tmp_path, monitor=monitor, max_steps=6, every=3, callbacks_extra=[gpu])
    logged = logger.series("system/gpu_0_utilization_percentage")
    assert sorted(logged) == sorted(logger.series("loss")) and set(logged.values()) == {7.0}
    assert gpu.sampler is None  # stopped with the fit


def test_no_gpu_metrics_without_a_gpu(tmp_path: Path) -> None:
    gpu = GpuSystemMetrics()
    _, logger = fit(tmp_path, max_steps=4, every=2, callbacks_extra=[gpu])
    assert not any(k.startswith("system/") for _, metrics in logger.calls for k in metrics)


def test_progress_bar_draws_by_time(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    bar = TimedProgressBar(refresh_s=10)
    assert bar._time_to_draw() and not bar._time_to_draw()
    now[0] += 9.9
    assert not bar._time_to_draw()
    now[0] += 0.1
    assert bar._time_to_draw()


def test_progress_bar_shows_metrics_as_of_the_last_log_window(tmp_path: Path) -> None:
    bar = TimedProgressBar(refresh_s=3600, metrics=("loss", "absent"))
    fit(tmp_path, max_steps=9, every=3, callbacks_extra=[bar], enable_progress_bar=True)
    assert bar._read_step == 9 and set(bar.values) == {"loss"}
    assert bar.get_metrics(bar.trainer, None)["loss"] == bar.values["loss"]


class RecordingTracker:
    experiment_name, run_id = "x", "r"

    def __init__(self) -> None:
        self.params: dict[str, str] = {}

    def log_params(self, params: dict[str, str]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass


def test_the_peak_behind_mfu_is_logged_as_params_once(tmp_path: Path) -> None:
    tracker = RecordingTracker()
    fit(tmp_path, monitor=ThroughputMonitor(peak_tflops=2.5), logger=TrackerLogger(tracker))
    assert tracker.params == {
        "perf.mfu_peak_tflops": "2.5",
        "perf.mfu_peak_source": "override",
        "perf.mfu_device": "cpu",
        "perf.mfu_flops_per_tok": f"{TinyLM.flops_per_token:g}",
    }


def test_tracker_logger_flattens_params_and_skips_empty_ones() -> None:
    tracker = RecordingTracker()
    logger = TrackerLogger(tracker)
    logger.log_hyperparams({})
    logger.log_hyperparams({"a": {"b": 1, "c": [1, 2]}})
    assert tracker.params == {"a.b": "1", "a.c": "[1, 2]"}


@pytest.mark.parametrize("interval", [0, -1.0])
def test_bad_intervals_are_refused(interval: float) -> None:
    with pytest.raises(ValueError):
        GpuSystemMetrics(interval_s=interval)
    with pytest.raises(ValueError):
        TimedProgressBar(refresh_s=interval)


def test_output_to_a_file_or_pipe_gets_progress_lines_with_the_eta_to_max_steps(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    display = progress.progress_display(line_every_s=0, metrics=("loss", "absent"))
    assert isinstance(display, progress.ProgressLines)  # pytest's stdout is not a terminal
    with caplog.at_level(logging.INFO, logger="trainpipe"):
        fit(tmp_path, max_steps=9, every=3, callbacks_extra=[display], enable_progress_bar=True)
    lines = [r.getMessage() for r in caplog.records if r.name == progress.__name__]
    assert lines[0].startswith("step 1/9 (11%)  epoch 0")
    assert re.search(
        r"^step 4/9 \(44%\)  epoch 0  loss [\d.e-]+  [\d.e-]+ s/step  ETA \d+s$", lines[3]
    )
    assert lines[-1].startswith("step 9/9 (100%)  loss") and "trained in" in lines[-1]
    assert display.trainer.progress_bar_callback is display  # no bar added by Lightning
    assert progress.duration(185) == "3m05s" and progress.duration(3720) == "1h02m"
