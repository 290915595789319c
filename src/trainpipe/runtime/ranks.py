"""Which process am I? Read from the launcher's environment (torchrun/SLURM), before torch.distributed is up."""

from __future__ import annotations

import os


def global_rank() -> int:
    for key in ("RANK", "SLURM_PROCID"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


def is_rank_zero() -> bool:
    return global_rank() == 0
