"""OmegaConf resolvers used by the config tree. Registered once per process, on import.

`${run_identity:}` names a job without timestamps: every torchrun rank, every joblib worker and
every rerun of the same command compute the same name, so they share one output dir and one
MLflow run (DESIGN.md decisions 1 and 2).
"""

from __future__ import annotations

import hashlib
import json

from omegaconf import DictConfig, OmegaConf

# The parts of the config that decide what is trained. Paths, logging and registry settings
# do not change the model, so they do not change the job's identity.
IDENTITY_SECTIONS = ("data", "model", "trainer", "callbacks", "seed", "model_uri")


def config_fingerprint(root: DictConfig, length: int = 8) -> str:
    """A short, stable hash of the training-relevant config (unresolved, so no I/O happens)."""
    picked = {
        key: OmegaConf.to_container(root[key], resolve=False)
        if OmegaConf.is_config(root[key])
        else root[key]
        for key in IDENTITY_SECTIONS
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


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("run_identity"):
        OmegaConf.register_new_resolver("run_identity", _run_identity)


register_resolvers()
