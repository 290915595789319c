"""Benchmarks on a shared machine: notice other processes' CPU use, repeat what they disturbed.

`CpuWatch` compares the machine's busy time (/proc/stat) with this process's and its children's
CPU time (os.times): the difference is what other processes used meanwhile.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for trainpipe and the baseline alike (default: torch's, one per core); 1 is steadier on a shared machine",
    )


def apply_threads(threads: int | None) -> None:
    """Use `threads` torch threads here and in every trainpipe child (through OMP_NUM_THREADS)."""
    if threads:
        import torch

        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


class CpuWatch:
    """How much CPU other processes took while a benchmark ran (a shared machine skews timings)."""

    def __init__(self) -> None:
        self.start = (self._busy(), self._own(), time.monotonic())

    @staticmethod
    def _busy() -> float:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return 0.0
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def others(self) -> tuple[float, float]:
        """(core-seconds other processes used since the start, their share of the machine)."""
        busy0, own0, wall0 = self.start
        others = max(0.0, (self._busy() - busy0) - (self._own() - own0))
        wall = max(time.monotonic() - wall0, 1e-9)
        return others, others / (wall * (os.cpu_count() or 1))

    def report(self) -> str:
        """One line: core-seconds used by other processes during the benchmark."""
        others, share = self.others()
        wall = time.monotonic() - self.start[2]
        flag = (
            "  <- the machine was shared: rerun on an idle machine for firm numbers"
            if share > 0.15
            else ""
        )
        return f"other processes used {others:.1f} core-s in {wall:.0f} s ({share:.0%} of the machine){flag}"


# a measurement during which other processes took more than this share of the CPUs is repeated,
# at most REPEAT_BUDGET times per script (a machine that stays busy is reported, not waited out)
BUSY_SHARE = 0.10
REPEAT_BUDGET = 8
REPEATS = {"measured": 0, "repeated": 0, "busy": 0}


def quiet(measure: Callable[[], T], tries: int = 3) -> T:
    """Run `measure`; repeat it (up to `tries` times) while other processes were busy during it."""
    for attempt in range(tries):
        watch = CpuWatch()
        result = measure()
        _, share = watch.others()
        if share <= BUSY_SHARE:
            REPEATS["measured"] += 1
            return result
        if attempt == tries - 1 or REPEATS["repeated"] >= REPEAT_BUDGET:
            REPEATS["measured"] += 1
            REPEATS["busy"] += 1
            return result
        REPEATS["repeated"] += 1
        print(
            f"  (other processes took {share:.0%} of the CPUs during a measurement: repeating it)",
            flush=True,
        )
    raise AssertionError("unreachable")


def repeats_note() -> str:
    repeated, busy = REPEATS["repeated"], REPEATS["busy"]
    text = f"{repeated} measurement(s) repeated because other processes were busy"
    if busy:
        text += (
            f"; {busy} of {REPEATS['measured']} kept although other processes were busy during them"
        )
    return text


def unreliable() -> bool:
    """True when more than a fifth of the kept measurements ran while other processes were busy."""
    return REPEATS["busy"] > 0.2 * max(REPEATS["measured"], 1)
