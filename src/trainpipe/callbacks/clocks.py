"""Clocks of the throughput monitor (callbacks/throughput.py): marks now, readings later.

`HostClock` marks are `time.perf_counter` readings. `EventClock` marks are CUDA events recorded
on the current stream: recording costs no synchronisation, and reading them waits once for the
last one (events complete in stream order), so a window of steps is read with a single wait.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch


def seconds_since_process_start() -> float | None:
    """Age of this process (Linux, 1/CLK_TCK ≈ 10 ms resolution); None where /proc is unavailable."""
    try:
        stat = Path("/proc/self/stat").read_text()
        # the 22nd field (starttime, clock ticks since boot); the name in (…) may contain spaces
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class HostClock:
    """Marks are `perf_counter` readings."""

    def mark(self) -> float:
        return time.perf_counter()

    def wait(self, last_mark: Any) -> None:
        pass

    def seconds(self, start: float, end: float) -> float:
        return end - start


class EventClock:
    """Marks are CUDA events on the current stream; reading them waits for the last one once."""

    def __init__(self, event_type: Any = None) -> None:
        self._event_type = event_type or torch.cuda.Event

    def mark(self) -> Any:
        event = self._event_type(enable_timing=True)
        event.record()
        return event

    def wait(self, last_mark: Any) -> None:
        last_mark.synchronize()  # recorded in order on one stream: every earlier mark is done too

    def seconds(self, start: Any, end: Any) -> float:
        return start.elapsed_time(end) / 1000.0
