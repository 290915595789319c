"""Checkpoints that survive a kill at any moment (docs/architecture.md, "Checkpoints").

Two layouts, both published by one rename, so a reader sees the old checkpoint or the new one and
never half of one:
- a file (one process, DDP, FSDP's full state): through `runtime/atomic.py` (temp file, fsync,
  rename, directory fsync), written by rank 0;
- a directory (trainer=fsdp2, `torch.distributed.checkpoint`): every rank writes its shards into
  a hidden staging directory, rank 0 adds `meta.pt` (everything but weights and optimizer
  state), fsyncs it all and renames the directory into place. The DCP index records how each
  tensor was split, so a job saved by N processes loads into M (resharding on load).
Loads are always weights-only (no pickle of arbitrary objects). Resume checkpoints are named
`step-<global step>.ckpt`, files or directories alike; `step_checkpoints` finds both.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.strategies import ModelParallelStrategy

from trainpipe.runtime import faults
from trainpipe.runtime.atomic import atomic_write, fsync_dir, temp_path

# Types our checkpoints may contain beyond torch's weights-only defaults (tensors, containers,
# numbers, strings). Everything we write is kept to those on purpose (see runtime/rng.py), so the
# list is empty; anything else in a file is refused at load time.
SAFE_GLOBALS: list[type] = []
STEP_NAME = re.compile(r"^step-(\d+)\.ckpt$")
META_FILE = "meta.pt"  # Lightning's name for a sharded checkpoint's non-tensor part
WEIGHTS_PREFIX = "state_dict."  # how DCP flattens Lightning's {"state_dict": {...}}
OPTIMIZER_PREFIX = "optimizer_"
_saves = 0


def step_checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.ckpt"


def step_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of the resume checkpoints (files or sharded dirs) in `directory`, newest first."""
    found = [
        (int(m.group(1)), p)
        for p in Path(directory).glob("step-*.ckpt")
        if (m := STEP_NAME.match(p.name))
    ]
    return sorted(found, reverse=True)


def remove_checkpoint(path: Path) -> None:
    """Delete a checkpoint file or sharded directory (missing is fine)."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_staging(directory: Path) -> None:
    """Delete what killed saves left behind (`.<name>.ckpt.tmp<pid>` files and shard dirs, which
    can be gigabytes). Call it between saves: one job writes a checkpoint dir (runtime/lock.py)."""
    for leftover in Path(directory).glob(".*.ckpt.tmp*"):
        remove_checkpoint(leftover)


def _next_save_dies() -> bool:
    """Count this save; True if the fault drill kills the K-th save (runtime/faults.py)."""
    global _saves
    _saves += 1
    return faults.armed("kill_in_checkpoint_save", _saves)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to `path` atomically; the K-th save can be killed for drills (runtime/faults.py)."""
    dies = _next_save_dies()

    def die_if_armed() -> None:
        if dies:
            faults.die()

    atomic_write(path, lambda handle: torch.save(obj, handle), before_rename=die_if_armed)


def publish_directory(staging: Path, target: Path) -> None:
    """Make a fully written staging directory durable and rename it to `target` (rank 0)."""
    for item in staging.iterdir():  # DCP fsyncs its shards; meta.pt came from a plain torch.save
        with open(item, "rb") as handle:
            os.fsync(handle.fileno())
    fsync_dir(staging)
    if _next_save_dies():
        faults.die()
    if target.exists():  # the same step saved again: swap, then drop the old one
        old = temp_path(target.with_name(target.name + ".old"))
        os.replace(target, old)
        os.replace(staging, target)
        remove_checkpoint(old)
    else:
        os.replace(staging, target)
    fsync_dir(target.parent)


def _load_meta(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        return torch.load(path, map_location=map_location, weights_only=True)


def _dcp_index(directory: Path) -> Any:
    from torch.distributed.checkpoint import FileSystemReader

    return FileSystemReader(str(directory)).read_metadata()


def checkpoint_contents(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint as far as resuming needs to judge it, without loading sharded tensors.

    A file is loaded whole. For a sharded directory: `meta.pt`, plus `state_dict` and
    `optimizer_states` keys standing for the shards when the DCP index holds them, after
    checking that every shard file it names is there and long enough.
    """
    path = Path(path)
    if not path.is_dir():
        return load_checkpoint_file(path)
    contents = _load_meta(path / META_FILE)
    index = _dcp_index(path)
    for info in index.storage_data.values():
        shard = path / info.relative_path
        if not shard.is_file() or shard.stat().st_size < info.offset + info.length:
            raise OSError(f"shard {info.relative_path} is missing or truncated")
    keys = index.state_dict_metadata
    if any(k.startswith(WEIGHTS_PREFIX) for k in keys):
        contents["state_dict"] = "sharded"
    if any(k.startswith(OPTIMIZER_PREFIX) for k in keys):
        contents["optimizer_states"] = "sharded"
    return contents


def _load_sharded_weights(directory: Path) -> dict[str, torch.Tensor]:
    """The full weights of a sharded checkpoint in this one process (no process group needed)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    state = {
        key[len(WEIGHTS_PREFIX) :]: torch.empty(meta.size, dtype=meta.properties.dtype)
        for key, meta in _dcp_index(directory).state_dict_metadata.items()
        if key.startswith(WEIGHTS_PREFIX) and isinstance(meta, TensorStorageMetadata)
    }
    nested = {"state_dict": state}  # DCP flattens it to the same "state_dict.<name>" keys
    with warnings.catch_warnings():  # "torch.distributed is disabled …": on purpose here
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(nested, checkpoint_id=str(directory), no_dist=True)
    return state


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a trainpipe checkpoint with `weights_only=True` (and only our allowlisted types).

    A sharded directory comes back as one dict too: its metadata and the full `state_dict`
    (optimizer state is left out: only a resuming trainer needs it, and it reads the shards).
    """
    path = Path(path)
    if path.is_dir():
        return {
            **_load_meta(path / META_FILE, map_location),
            "state_dict": _load_sharded_weights(path),
        }
    return _load_meta(path, map_location)


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

    def remove_checkpoint(self, path: Any) -> None:
        remove_checkpoint(Path(path))


class FSDP2Strategy(ModelParallelStrategy):
    """`trainer=fsdp2`: Lightning's ModelParallelStrategy as data parallelism over every process
    (the module's `configure_model` applies FSDP2), with atomic sharded checkpoints.

    `save_distributed_checkpoint=False` gathers full weights and optimizer state on rank 0 and
    writes one file instead (through the CheckpointIO plugin: atomic as well).
    """

    def __init__(self, save_distributed_checkpoint: bool = True, **kwargs: Any) -> None:
        super().__init__(save_distributed_checkpoint=save_distributed_checkpoint, **kwargs)

    def setup_environment(self) -> None:
        # one mesh dimension that spans every process: FSDP over all of them, no tensor parallel
        self._data_parallel_size = self.num_nodes * self.num_processes
        self._tensor_parallel_size = 1
        super().setup_environment()

    def save_checkpoint(
        self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any | None = None
    ) -> None:
        if not self._save_distributed_checkpoint:
            super().save_checkpoint(checkpoint, filepath, storage_options)
            return
        target = Path(self.broadcast(str(filepath)))
        staging = Path(self.broadcast(str(temp_path(target))))  # rank 0's name, on every rank
        if self.global_rank == 0:
            shutil.rmtree(staging, ignore_errors=True)  # a killed earlier attempt's leftovers
            staging.mkdir(parents=True)
        self.barrier()
        super().save_checkpoint(checkpoint, staging, storage_options)
        self.barrier()  # every rank's shards are written
        if self.global_rank == 0:
            publish_directory(staging, target)
        self.barrier()

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> Any:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return super().load_checkpoint(checkpoint_path, weights_only=True)
