"""One process per output dir: a job holds `<output dir>/.lock` while it runs.

A second identical command (same output dir) finds the lock held and stops at once, before
writing anything, with the holder's pid. The lock is an `flock`: the kernel drops it when the
holding process dies, however it dies, so a stale lock from a killed job is simply taken over.
The file descriptor survives `exec` (the self-launch into torchrun keeps the lock for the job).
A forked child (a DataLoader worker process) closes its copy at once: the lock stays the job's
alone, so a killed job's lock is free as soon as the job is gone, not when its workers notice.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from trainpipe.errors import UserError

LOCK_FILE = ".lock"
_held: set[int] = set()  # this process's lock descriptors


def _close_in_child() -> None:
    for fd in _held:
        os.close(fd)  # the parent's descriptor keeps the flock
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)


class JobRunning(UserError):
    kind = "already running"


class OutputDirLock:
    def __init__(self, output_dir: Path) -> None:
        self.path = Path(output_dir) / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> OutputDirLock:
        """Take the lock or raise JobRunning naming the holder. Creates only the lock file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise JobRunning(
                f"{self.path.parent} is in use by another trainpipe process (pid {holder}); "
                "wait for it or stop it, then rerun"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.set_inheritable(fd, True)
        self.fd = fd
        _held.add(fd)
        return self

    def release(self) -> None:
        if self.fd is not None:
            _held.discard(self.fd)
            os.close(self.fd)  # closing the last descriptor drops the flock
            self.fd = None
