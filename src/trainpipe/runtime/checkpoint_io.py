"""Checkpoint files that survive a kill at any moment (DESIGN.md decision 6).

Save: write to a temp file in the same directory, fsync, rename over the target, fsync the
directory. A reader sees the old checkpoint or the new one, never half of one. Load: always
`weights_only=True` (no pickle of arbitrary objects).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from trainpipe.runtime import faults

# Types our checkpoints may contain beyond torch's weights-only defaults (tensors, containers,
# numbers, strings). Everything we write is kept to those on purpose (see runtime/rng.py), so the
# list is empty; anything else in a file is refused at load time.
SAFE_GLOBALS: list[type] = []
_saves = 0


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to `path` atomically (temp file + fsync + rename + directory fsync)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    global _saves
    _saves += 1
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if faults.armed("kill_in_checkpoint_save", _saves):
            faults.die()
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a trainpipe checkpoint with `weights_only=True` (and only our allowlisted types)."""
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        return torch.load(path, map_location=map_location, weights_only=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO plugin: atomic saves, weights-only loads."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint_file(path, map_location=map_location or "cpu")
