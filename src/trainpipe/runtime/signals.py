"""Stop signals (SIGTERM, SIGUSR1, SIGINT): finish the step, checkpoint, stop — or stop at once.

The handler only records the signal. While the training loop runs (`deferred`, set by the
preemption callback), that callback reads the record before each step, all ranks agree, a
checkpoint is written and `Preempted` is raised. Anywhere else (preparing data, testing, registering) there is nothing
to checkpoint, so the handler raises `Interrupted` right away.
"""

from __future__ import annotations

import signal
from typing import Any

from trainpipe.runtime.failures import Interrupted


class StopSignals:
    def __init__(self, names: tuple[str, ...] = ("SIGTERM", "SIGUSR1", "SIGINT")) -> None:
        self.names = names
        self.received: str | None = None
        # True while the training loop runs and will checkpoint at the next step boundary
        self.deferred = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Route the signals here (again: Lightning replaces the SIGTERM handler when fit starts)."""
        for name in self.names:
            number = getattr(signal, name)
            previous = signal.signal(number, self._on_signal)
            self._previous.setdefault(number, previous)

    def restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name
        if not self.deferred:
            raise Interrupted(self.received)
