"""ThroughputMonitor inside real (tiny, CPU) Lightning fits: what reaches the loggers and summary()."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning
import pytest
import torch
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader, Dataset

from trainpipe.callbacks import clocks, throughput
from trainpipe.callbacks.throughput import ThroughputMonitor

SEQ = 7  # "tokens" per sample
FLOPS = 5e5  # per token, whatever the tiny model really does
PEAK = 1e-3  # TFLOP/s: small enough that the tiny model's MFU is a visible number
WINDOW_KEYS = {
    "perf/step_time_ms",
    "perf/samples_per_s",
    "perf/tokens_per_s",
    "perf/data_wait_frac",
}
OLD_SUMMARY_KEYS = {
    "warmup_steps",
    "steps_measured",
    "step_time_ms_median",
    "step_time_ms_mean",
    "batch_time_ms_median",
    "cpu_time_ms_mean",
    "samples_per_s",
    "first_step_unix",
    "first_step_since_process_start_s",
    "epochs",
}


class Rows(Dataset):
    def __init__(self, n: int, sleep_s: float = 0.0) -> None:
        self.n, self.sleep_s = n, sleep_s

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return torch.full((SEQ,), float(i % 5))


class Tiny(lightning.LightningModule):
    """Defines neither tokens_in_batch nor flops_per_token."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(SEQ, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.net(batch).pow(2).mean()
        self.log("loss", loss, on_step=True)  # Lightning's own step cadence, to compare with
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val_loss", self.net(batch).pow(2).mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class TinyLM(Tiny):
    flops_per_token = FLOPS

    def tokens_in_batch(self, batch: torch.Tensor) -> int:
        return batch.shape[0] * batch.shape[1]


class TinyLMFlopsMethod(TinyLM):
    def flops_per_token(self) -> float:  # type: ignore[override]
        return FLOPS


class MemoryLogger(Logger):
    """Keeps every log_metrics call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.calls.append((step, dict(metrics)))

    def series(self, key: str) -> dict[int | None, float]:
        return {step: metrics[key] for step, metrics in self.calls if key in metrics}


def fit(
    tmp_path: Path,
    module: lightning.LightningModule | None = None,
    *,
    max_steps: int = 8,
    every: int = 2,
    warmup: int = 2,
    rows: int = 64,
    batch_size: int = 4,
    sleep_s: float = 0.0,
    monitor: ThroughputMonitor | None = None,
    val_rows: int = 0,
    callbacks_extra: list[Any] | None = None,
    logger: Logger | None = None,
    enable_progress_bar: bool = False,
    **trainer_kwargs: Any,
) -> tuple[ThroughputMonitor, MemoryLogger]:
    """Fit `module` for `max_steps`, logging every `every` steps; `monitor` replaces `warmup`."""
    monitor = monitor or ThroughputMonitor(warmup_steps=warmup)
    logger = logger or MemoryLogger()
    trainer = lightning.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        log_every_n_steps=every,
        logger=logger,
        callbacks=[monitor, *(callbacks_extra or [])],
        enable_progress_bar=enable_progress_bar,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        **trainer_kwargs,
    )
    train = DataLoader(Rows(rows, sleep_s), batch_size=batch_size)
    val = DataLoader(Rows(val_rows), batch_size=batch_size) if val_rows else None
    trainer.fit(module or TinyLM(), train, val)
    return monitor, logger


def _windows_after_warmup(logger: MemoryLogger, every: int, warmup: int) -> list[int | None]:
    """The steps Lightning logged `loss` at, less the windows made only of warm-up steps."""
    return sorted(logger.series("loss"))[warmup // every :]


def test_logs_window_metrics_when_lightning_logs(tmp_path: Path) -> None:
    monitor = ThroughputMonitor(warmup_steps=3, peak_tflops=PEAK)
    monitor, logger = fit(tmp_path, TinyLM(), max_steps=10, every=2, monitor=monitor)
    expected = _windows_after_warmup(logger, every=2, warmup=3)
    assert len(expected) == 4  # windows ending at optimizer steps 4, 6, 8, 10
    for key in WINDOW_KEYS | {"perf/mfu"}:
        assert sorted(logger.series(key)) == expected, key
    assert not logger.series("perf/gpu_mem_peak_gib")  # CUDA only

    samples, tokens = logger.series("perf/samples_per_s"), logger.series("perf/tokens_per_s")
    mfu, step_ms = logger.series("perf/mfu"), logger.series("perf/step_time_ms")
    for step in expected:
        assert tokens[step] == pytest.approx(SEQ * samples[step], rel=1e-4)
        assert mfu[step] == pytest.approx(tokens[step] * FLOPS / (PEAK * 1e12), rel=1e-4)
        # 4 rows per step: samples/s and the mean step time describe the same steps
        assert samples[step] == pytest.approx(4 / (step_ms[step] / 1000), rel=1e-4)
    assert (monitor.peak_tflops, monitor.peak_source) == (PEAK, "override")


@pytest.mark.parametrize(
    "module, peak, logs_mfu",
    [
        (TinyLMFlopsMethod(), PEAK, True),
        (TinyLM(), None, False),  # CPU: no device peak to look up
        (Tiny(), PEAK, False),  # no flops_per_token
    ],
)
def test_mfu_is_logged_only_with_flops_and_a_peak(
    tmp_path: Path, module: lightning.LightningModule, peak: float | None, logs_mfu: bool
) -> None:
    monitor = ThroughputMonitor(warmup_steps=2, peak_tflops=peak)
    monitor, logger = fit(tmp_path, module, monitor=monitor)
    assert bool(logger.series("perf/mfu")) is logs_mfu
    assert (monitor.summary()["mfu"] is not None) is logs_mfu
    expected_peak = (None, None) if peak is None else (peak, "override")  # CPU: no table entry
    assert (monitor.peak_tflops, monitor.peak_source) == expected_peak
    tokens, samples = logger.series("perf/tokens_per_s"), logger.series("perf/samples_per_s")
    per_sample = SEQ if isinstance(module, TinyLM) else 1  # without tokens_in_batch: rows
    assert tokens and all(tokens[s] == pytest.approx(per_sample * samples[s]) for s in tokens)


def test_summary_keeps_the_old_keys_and_is_written_as_json(tmp_path: Path) -> None:
    out = tmp_path / "perf" / "summary.json"
    monitor = ThroughputMonitor(warmup_steps=3, output_path=str(out))
    monitor, _ = fit(tmp_path, max_steps=9, monitor=monitor)
    summary = monitor.summary()
    assert summary.keys() >= OLD_SUMMARY_KEYS
    assert {"tokens_per_s", "data_wait_frac", "mfu", "peak_tflops", "peak_source"} <= summary.keys()
    assert summary["steps_measured"] == 9 - 3  # one epoch: only the warm-up is left out
    assert summary["tokens_per_s"] == pytest.approx(SEQ * summary["samples_per_s"])
    assert summary["step_time_ms_median"] > 0 and summary["cpu_time_ms_mean"] >= 0
    assert json.loads(out.read_text()) == json.loads(json.dumps(summary))


def test_epoch_starts_and_validation_are_left_out(tmp_path: Path) -> None:
    # 4 batches per epoch, validation every 2 batches, 12 steps, warm-up 2: steps 1-2 are warm-up,
    # 3, 7 and 11 follow a validation, 5 and 9 start an epoch: 4, 6, 8, 10, 12 are measured
    monitor, _ = fit(tmp_path, max_steps=12, warmup=2, rows=16, val_rows=4, val_check_interval=2)
    assert monitor.summary()["steps_measured"] == 5
    assert [e["steps"] for e in monitor.epochs] == [1, 2, 2]


def test_gradient_accumulation_times_optimizer_steps(tmp_path: Path) -> None:
    monitor, logger = fit(tmp_path, max_steps=6, every=2, warmup=2, accumulate_grad_batches=2)
    assert monitor.step_rows == [2 * 4] * 4  # two micro-batches of 4 rows per measured step
    expected = _windows_after_warmup(logger, every=2, warmup=2)
    assert sorted(logger.series("perf/samples_per_s")) == expected


def test_data_wait_grows_when_loading_is_slow(tmp_path: Path) -> None:
    fast, _ = fit(tmp_path / "fast", max_steps=10)
    # 100 ms per batch of 4: loading dominates even when a loaded machine slows the steps down
    slow, logger = fit(tmp_path / "slow", max_steps=10, sleep_s=0.025)
    fast_wait, slow_wait = fast.summary()["data_wait_frac"], slow.summary()["data_wait_frac"]
    assert 0.0 <= fast_wait <= 1.0 and 0.0 <= slow_wait <= 1.0
    assert slow_wait > 0.6 and slow_wait > fast_wait + 0.2
    assert all(0.0 <= v <= 1.0 for v in logger.series("perf/data_wait_frac").values())


class FakeEvent:
    """Stands in for torch.cuda.Event: a timestamp readable only after a later event's sync."""

    syncs = 0
    synced_until = float("-inf")

    def __init__(self, enable_timing: bool = False) -> None:
        assert enable_timing
        self.t: float | None = None

    def record(self) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        FakeEvent.syncs += 1
        FakeEvent.synced_until = max(FakeEvent.synced_until, self.t)

    def elapsed_time(self, end: FakeEvent) -> float:
        assert max(self.t, end.t) <= FakeEvent.synced_until, "read before synchronising"
        return 1000 * (end.t - self.t)


def test_event_clock_synchronises_once_per_log_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakeEvent, "syncs", 0)
    monkeypatch.setattr(throughput, "_clock_for", lambda device: clocks.EventClock(FakeEvent))
    monitor, logger = fit(tmp_path, max_steps=12, every=4, warmup=2)
    assert sorted(logger.series("perf/step_time_ms")) == _windows_after_warmup(logger, 4, 2)
    # 3 log windows, plus the epoch end / fit end reading what is left: never once per step
    assert FakeEvent.syncs <= 3 + 2
    assert monitor.summary()["steps_measured"] == 10
