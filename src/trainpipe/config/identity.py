"""What makes a job *this* job: its training config and the content of its data.

`run_name` defaults to `${run_identity:}` = `<data.name>-<model.name>-<hash>`, where the hash
covers the config sections that decide what is trained and a digest of the data's content. So
the same command on the same data always maps to the same output dir and MLflow run (every
torchrun rank and every rerun agree; a killed job resumes there), while a changed data file is a
new job. Pure Python: no torch or datasets, so `--cfg job` prints the same name the run uses.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trainpipe.config.sources import SOURCES
from trainpipe.config.targets import declared

# The parts of the config that decide what is trained. Paths, logging and registry settings
# do not change the model, so they do not change the job's identity.
IDENTITY_SECTIONS = (
    "task", "data", "tokenizer", "model", "trainer", "callbacks", "seed", "model_uri",
)  # fmt: skip
# What a checkpoint's weights depend on: resuming needs the same model and data, not the same
# max_epochs (a job given more epochs under the same run_name continues where it stopped).
MODEL_SECTIONS = ("model", "data", "tokenizer")
UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def fingerprint(root: DictConfig, sections: tuple[str, ...], length: int = 8) -> str:
    """A short, stable hash of config sections (unresolved: no I/O, paths do not leak in)."""
    picked = {
        key: OmegaConf.to_container(root[key], resolve=False)
        if OmegaConf.is_config(root[key])
        else root[key]
        for key in sections
        if key in root
    }
    blob = json.dumps(picked, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def config_fingerprint(root: DictConfig) -> str:
    """The fingerprint of what is trained (IDENTITY_SECTIONS, unresolved): the one hash of the
    training config, in the run name and in the job's records alike."""
    return fingerprint(root, IDENTITY_SECTIONS, length=16)


def data_files(data: dict[str, Any] | DictConfig) -> list[Path]:
    """The files a data config reads, in a stable order (its source's; config/sources.py)."""
    source = SOURCES.get(data.get("source"))
    return source.files(data) if source is not None else []


def source_digest(data: dict[str, Any] | DictConfig) -> str:
    """Content digest of the data a config names (its source's; config/sources.py): same bytes
    → same digest, wherever they live. Hub data: its id (the data layer refines it with the
    loaded content's fingerprint)."""
    source = SOURCES.get(data.get("source"))
    if source is None:
        return hashlib.sha256(f"{data.get('source')}:{data.get('name')}".encode()).hexdigest()[:16]
    return source.digest(data)


def path_stem(path: Any) -> str:
    """A readable name for data read from `path`: the file's stem, or the folder of a glob."""
    first = path if isinstance(path, str) or path is None else (list(path) or [None])[0]
    if not first:
        return "data"
    candidate = Path(str(first))
    for part in (candidate.stem, candidate.parent.name):
        if part and not any(ch in part for ch in "*?[]"):
            return safe_name(part)
    return "files"


def safe_name(text: str) -> str:
    """Usable in a path, an MLflow experiment and a registered model name."""
    return UNSAFE_NAME.sub("-", str(text)).strip("-") or "unnamed"


def run_identity(root: DictConfig) -> str:
    """`<data>-<model>-<hash of the training config and the data's content>`."""
    data = root.get("data") or {}
    model_name = OmegaConf.select(root, "model.name", default=None) or root.get("task_name", "run")
    digest = source_digest(data) if data else ""
    tracked = bool(declared(root.get("logger"), "logger", "tracked", default=False))
    blob = f"{config_fingerprint(root)}|{digest}|tracked={tracked}"
    short = hashlib.sha256(blob.encode()).hexdigest()[:8]
    return f"{safe_name(data.get('name', 'data'))}-{safe_name(model_name)}-{short}"
