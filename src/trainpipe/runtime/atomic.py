"""Files that are either fully written or not there at all (docs/architecture.md, "Checkpoints").

Every file another process may read while we write it — checkpoints, job state, the tracking
cursor, model packages, token arrays — goes through `atomic_write`: write a temp file in the same
directory, fsync it, rename it over the target, fsync the directory. A reader (or a rerun after a
SIGKILL) sees the old file or the new one, never half of one. Temp files are named
`.<name>.tmp<pid>` so discovery globs (`step-*.ckpt`, `*.bin`) never pick them up.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def temp_path(target: Path) -> Path:
    """The temp name `atomic_write` uses for `target` (same directory, hidden, per process)."""
    return target.with_name(f".{target.name}.tmp{os.getpid()}")


def fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[IO[bytes]], None],
    before_rename: Callable[[], None] | None = None,
) -> Path:
    """Call `write(handle)` on a temp file, then publish it at `path` in one rename.

    `before_rename` runs after the data is on disk and before it is published (fault-injection
    drills kill the process there). The temp file is removed if anything fails.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(target)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        _apply_umask(tmp)
        if before_rename is not None:
            before_rename()
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)
    return target


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """For writers that want a file name (safetensors, numpy): yield a temp path, publish on exit."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(target)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        _apply_umask(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temp name; on success it replaces `path` as a whole."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = temp_path(target)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    fsync_dir(target.parent)


def _apply_umask(path: Path) -> None:
    # Some writers create files 0600 (tempfile-style); published files get the usual
    # 0666 & ~umask, so other users and a container's uid can read what a job wrote.
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
