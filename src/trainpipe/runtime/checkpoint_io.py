"""Checkpoint files that survive a kill at any moment (docs/architecture.md, "Checkpoints").

Save: through `runtime/atomic.py` (temp file, fsync, rename, directory fsync): a reader sees the
old checkpoint or the new one, never half of one. Load: always `weights_only=True` (no pickle of
arbitrary objects). Resume checkpoints are `step-<global step>.ckpt`; `step_checkpoints` finds them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from trainpipe.runtime import faults
from trainpipe.runtime.atomic import atomic_write

# Types our checkpoints may contain beyond torch's weights-only defaults (tensors, containers,
# numbers, strings). Everything we write is kept to those on purpose (see runtime/rng.py), so the
# list is empty; anything else in a file is refused at load time.
SAFE_GLOBALS: list[type] = []
STEP_FILE = re.compile(r"^step-(\d+)\.ckpt$")
_saves = 0


def step_checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.ckpt"


def step_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of the resume checkpoints in `directory`, newest first."""
    found = [
        (int(m.group(1)), p)
        for p in Path(directory).glob("step-*.ckpt")
        if (m := STEP_FILE.match(p.name))
    ]
    return sorted(found, reverse=True)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to `path` atomically; the K-th save can be killed for drills (runtime/faults.py)."""
    global _saves
    _saves += 1
    number = _saves

    def die_if_armed() -> None:
        if faults.armed("kill_in_checkpoint_save", number):
            faults.die()

    atomic_write(path, lambda handle: torch.save(obj, handle), before_rename=die_if_armed)


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
