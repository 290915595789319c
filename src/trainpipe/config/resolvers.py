"""OmegaConf resolvers used by the config tree. Registered once per process, on import.

- `${run_identity:}`: the default `run_name`, `<data>-<model>-<hash>` (config/identity.py): every
  torchrun rank, every joblib worker and every rerun of the same command on the same data agree
  on it, so they share one output dir and one MLflow run (docs/architecture.md, "Identity").
- `${sweep_identity:}`: the same for a --multirun: rerunning the same sweep command continues it
  in the same sweep dir.
- `${path_stem:PATH}`: a readable data name from a file path or glob (`data/wine.csv` → `wine`).
- `${loader_workers:}`: DataLoader workers by the CPUs this process may use (at most
  MAX_LOADER_WORKERS): the default of data that is augmented per batch (configs/data/images.yaml).
  The run name hashes the unresolved config, so it is the same on any machine — and so are the
  results: per-batch seeding makes a batch the same whichever worker cuts it (data/loader.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

from omegaconf import DictConfig, OmegaConf

from trainpipe.config import identity


def _run_identity(*, _root_: DictConfig) -> str:
    return identity.run_identity(_root_)


def _sweep_identity() -> str:
    # A hash of the sweep's command line (its overrides, not its flags). Cached, and Hydra copies
    # resolver caches from the sweep's config into every job's config, so jobs (in any process)
    # see the sweep dir of the command that started them.
    overrides = sorted(arg for arg in sys.argv[1:] if not arg.startswith("-"))
    blob = json.dumps(overrides).encode()
    return f"sweep-{hashlib.sha256(blob).hexdigest()[:8]}"


MAX_LOADER_WORKERS = 8


def loader_workers() -> int:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(usable or 1, MAX_LOADER_WORKERS))


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("run_identity"):
        OmegaConf.register_new_resolver("run_identity", _run_identity)
    if not OmegaConf.has_resolver("sweep_identity"):
        OmegaConf.register_new_resolver("sweep_identity", _sweep_identity, use_cache=True)
    if not OmegaConf.has_resolver("path_stem"):
        OmegaConf.register_new_resolver("path_stem", identity.path_stem)
    if not OmegaConf.has_resolver("loader_workers"):
        OmegaConf.register_new_resolver("loader_workers", loader_workers)


register_resolvers()
