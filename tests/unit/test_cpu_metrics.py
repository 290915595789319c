"""CPU and memory system metrics (callbacks/cpu_metrics.py): MLflow's names, logged at the log
windows, sampled with psutil as MLflow's CPU monitor does, and no thread left behind."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.unit.test_throughput import fit
from trainpipe.callbacks.cpu_metrics import FIELDS, CpuSystemMetrics, psutil_reader


def test_cpu_and_memory_are_logged_under_mlflows_names_at_log_windows(tmp_path: Path) -> None:
    cpu = CpuSystemMetrics(interval_s=0.01)  # the real reader (psutil)
    _, logger = fit(tmp_path, max_steps=6, every=3, callbacks_extra=[cpu])
    for key in FIELDS:
        logged = logger.series(f"system/{key}")
        assert sorted(logged) == sorted(logger.series("loss")), key
    memory = logger.series("system/system_memory_usage_percentage")
    assert all(0 < value < 100 for value in memory.values())
    assert all(v > 0 for v in logger.series("system/system_memory_usage_megabytes").values())
    # stopped with the fit: no sampling thread is left behind
    assert cpu.sampler is None
    assert not [t for t in threading.enumerate() if t.name == "cpu-metrics"]


def test_the_reader_gives_the_fields_of_mlflows_cpu_monitor() -> None:
    from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor

    monitor = CPUMonitor()
    monitor.collect_metrics()
    read = psutil_reader()
    assert read is not None and set(read()) == set(FIELDS) == set(monitor.metrics)
