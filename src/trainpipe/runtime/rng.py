"""Capture and restore every random number generator a training step draws from.

States are stored as tensors, ints and tuples only, so checkpoints still load with
`weights_only=True` (numpy's state is converted from its ndarray form).

CUDA: the state of this process's own device only (a rank draws on no other GPU), so a job
resumes on a machine with fewer visible GPUs, or at another world size; checkpoints from before
kept one state per visible GPU (`cuda`), of which the current device's is restored if it exists.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_device"] = torch.cuda.get_rng_state(torch.cuda.current_device())
    return state


def restore(state: dict[str, Any]) -> None:
    random.setstate(_as_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if not torch.cuda.is_available():
        return
    device = torch.cuda.current_device()
    if "cuda_device" in state:
        torch.cuda.set_rng_state(state["cuda_device"], device)
    elif device < len(state.get("cuda", ())):  # an older checkpoint: one state per visible GPU
        torch.cuda.set_rng_state(state["cuda"][device], device)


def _as_tuples(value: Any) -> Any:
    # random.setstate wants tuples; a checkpoint round trip may hand back lists
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
