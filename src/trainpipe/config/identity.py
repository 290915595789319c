"""What makes a job *this* job: its training config and the content of its data.

`run_name` defaults to `${run_identity:}` = `<data.name>-<model.name>-<hash>`, where the hash
covers the config sections that decide what is trained and a digest of the data's content. So
the same command on the same data always maps to the same output dir and MLflow run (every
torchrun rank and every rerun agree; a killed job resumes there), while a changed data file is a
new job. Pure Python: no torch or datasets, so `--cfg job` prints the same name the run uses.
"""

from __future__ import annotations

import bisect
import glob
import hashlib
import importlib.metadata
import itertools
import json
import os
import re
import sysconfig
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trainpipe.config.targets import declared

# The parts of the config that decide what is trained. Paths, logging and registry settings
# do not change the model, so they do not change the job's identity.
IDENTITY_SECTIONS = (
    "task", "data", "tokenizer", "model", "trainer", "callbacks", "seed", "model_uri",
)  # fmt: skip
# What a checkpoint's weights depend on: resuming needs the same model and data, not the same
# max_epochs (a job given more epochs under the same run_name continues where it stopped).
MODEL_SECTIONS = ("model", "data", "tokenizer")
FILE_SOURCES = ("csv", "parquet", "json", "text")
DIGITS_VERSION = "digits-v1"
UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")

_file_digests: dict[tuple[str, int, int], str] = {}


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


def data_files(data: dict[str, Any] | DictConfig) -> list[Path]:
    """The files a file-based data config reads, in a stable order (empty for other sources)."""
    if data.get("source") == "stdlib":
        files = _stdlib_files(Path(sysconfig.get_paths()["stdlib"]))
        if data.get("max_bytes") is None:
            return files
        # the corpus is the first max_bytes of these files in this order: the files past the
        # cap are never read, so they are neither loaded nor hashed (all of them: ~30 MB, ~1.3 s)
        ends = list(itertools.accumulate(f.stat().st_size for f in files))
        return files[: bisect.bisect_left(ends, int(data["max_bytes"])) + 1]
    if data.get("source") not in FILE_SOURCES or not data.get("path"):
        return []
    patterns = data["path"] if not isinstance(data["path"], str) else [data["path"]]
    found: set[str] = set()
    for pattern in patterns:
        found.update(glob.glob(os.path.expanduser(str(pattern)), recursive=True))
    files = []
    for name in sorted(found):
        path = Path(name)
        # a directory stands for the files inside it
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return files


def _stdlib_files(root: Path) -> list[Path]:
    """The standard library's regular *.py files, sorted; site-packages (third-party code, often
    most of the tree) is pruned from the walk, not filtered out after it."""
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [d for d in subfolders if d != "site-packages"]
        found.extend(Path(folder, n) for n in names if n.endswith(".py"))
    return sorted(p for p in found if p.is_file())


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, remembered per (path, size, mtime) for the life of the process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _file_digests:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _file_digests[key] = digest.hexdigest()
    return _file_digests[key]


def source_digest(data: dict[str, Any] | DictConfig) -> str:
    """Content digest of the data a config names: same bytes → same digest, wherever they live.

    Local files and the stdlib corpus: every file's bytes (and its name). digits: the bundled
    copy's version. Hub datasets: their id (the data layer refines it with the downloaded
    content's fingerprint once it has loaded them).
    """
    source = data.get("source")
    if source == "digits":
        parts = [DIGITS_VERSION, _version("scikit-learn")]
    elif source in FILE_SOURCES or source == "stdlib":
        parts = [f"{p.name}:{file_digest(p)}" for p in data_files(data)]
    else:
        parts = [f"{source}:{data.get('name')}"]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


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
    blob = f"{fingerprint(root, IDENTITY_SECTIONS, length=16)}|{digest}|tracked={tracked}"
    short = hashlib.sha256(blob.encode()).hexdigest()[:8]
    return f"{safe_name(data.get('name', 'data'))}-{safe_name(model_name)}-{short}"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
