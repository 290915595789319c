"""OmegaConf resolvers used by the config tree. Registered once per process, on import.

`${run_identity:}` names a job without timestamps: every torchrun rank, every joblib worker and
every rerun of the same command compute the same name, so they share one output dir and one
MLflow run (DESIGN.md decisions 1 and 2). `${sweep_identity:}` does the same for a --multirun:
rerunning the same sweep command continues it in the same sweep dir.
"""

from __future__ import annotations

import hashlib
import json
import sys

from omegaconf import DictConfig, OmegaConf

# The parts of the config that decide what is trained. Paths, logging and registry settings
# do not change the model, so they do not change the job's identity.
IDENTITY_SECTIONS = ("data", "model", "trainer", "callbacks", "seed", "model_uri")


# What a checkpoint's weights depend on: resuming needs the same model and data, not the same
# max_epochs (a job given more epochs under the same run_name continues where it stopped).
MODEL_SECTIONS = ("model", "data")


def config_fingerprint(
    root: DictConfig, length: int = 8, sections: tuple[str, ...] = IDENTITY_SECTIONS
) -> str:
    """A short, stable hash of the training-relevant config (unresolved, so no I/O happens)."""
    picked = {
        key: OmegaConf.to_container(root[key], resolve=False)
        if OmegaConf.is_config(root[key])
        else root[key]
        for key in sections
        if key in root
    }
    blob = json.dumps(picked, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def _run_identity(*, _root_: DictConfig) -> str:
    explicit = _root_.get("run_name")
    if explicit:
        return str(explicit)
    prefix = OmegaConf.select(_root_, "model.name", default=None) or _root_.get("task_name", "run")
    return f"{prefix}-{config_fingerprint(_root_)}"


def _sweep_identity() -> str:
    # A hash of the sweep's command line (its overrides, not its flags). Cached, and Hydra copies
    # resolver caches from the sweep's config into every job's config, so jobs (in any process)
    # see the sweep dir of the command that started them.
    overrides = sorted(arg for arg in sys.argv[1:] if not arg.startswith("-"))
    blob = json.dumps(overrides).encode()
    return f"sweep-{hashlib.sha256(blob).hexdigest()[:8]}"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("run_identity"):
        OmegaConf.register_new_resolver("run_identity", _run_identity)
    if not OmegaConf.has_resolver("sweep_identity"):
        OmegaConf.register_new_resolver("sweep_identity", _sweep_identity, use_cache=True)


register_resolvers()
