"""Progress of a scoring job: a live line with rows/s on a terminal, a line every `every_s`
seconds otherwise (a log file or CI gets lines, not carriage returns)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ScoringProgress:
    def __init__(self, total: int | None, every_s: float, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.total = total
        self.every_s = every_s if not self.live else 0.25
        self.start = time.monotonic()
        self.rows = 0  # scored by this process (what rows/s measures)
        self.skipped = 0  # already scored by an earlier, interrupted run
        self._due = self.start + self.every_s

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.start

    @property
    def rows_per_s(self) -> float:
        return self.rows / max(self.seconds, 1e-9)

    def resumed(self, rows: int, chunks: int) -> None:
        self.skipped = rows
        if chunks:
            print(f"resuming after {chunks} scored chunk(s) ({rows} rows)", file=self.stream)

    def update(self, rows: int) -> None:
        self.rows += rows
        if time.monotonic() >= self._due:
            self._due = time.monotonic() + self.every_s
            self._show()

    def _show(self, end: str = "") -> None:
        done = self.rows + self.skipped
        of = f"/{self.total}" if self.total else ""
        share = f" ({100 * done / self.total:.0f}%)" if self.total else ""
        eta = ""
        if self.total and self.rows:
            eta = f"  eta {max(self.total - done, 0) / self.rows_per_s:.0f}s"
        text = f"scored {done}{of} rows{share}  {self.rows_per_s:,.0f} rows/s{eta}"
        if self.live:
            self.stream.write(f"\r{text}\x1b[K{end}")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        self._show(end="\n")
