"""Which process am I? The one place that reads it: the launcher's environment (torchrun, SLURM).

Read from the environment rather than torch.distributed so it answers before the process group
is up (the CLI decides log file names and rank-0-only work before torch is imported). torchrun
sets RANK/LOCAL_RANK/WORLD_SIZE; a SLURM task launched without torchrun sets SLURM_PROCID/…
"""

from __future__ import annotations

import os


def _first_int(*keys: str, default: int) -> int:
    for key in keys:
        if key in os.environ:
            return int(os.environ[key])
    return default


def global_rank() -> int:
    return _first_int("RANK", "SLURM_PROCID", default=0)


def local_rank() -> int:
    return _first_int("LOCAL_RANK", "SLURM_LOCALID", default=0)


def world_size() -> int:
    return _first_int("WORLD_SIZE", "SLURM_NTASKS", default=1)


def is_rank_zero() -> bool:
    return global_rank() == 0
