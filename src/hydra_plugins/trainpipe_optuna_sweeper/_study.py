"""Storage / sampler / pruner factories shared by the sweeper and ``trainpipe.hpo``.

Private module (skipped by Hydra's plugin scanner): it imports optuna.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage

DB_FILE = "optuna.db"
JOURNAL_FILE = "optuna.journal"
JOURNAL_PREFIX = "journal:"
SQLITE_PREFIX = "sqlite:///"
# seconds a sqlite connection waits for a lock held by another process (parallel jobs)
SQLITE_TIMEOUT = 60

_storages: dict[str, BaseStorage] = {}
_lock = threading.Lock()


def resolve_storage_url(storage: str | None, sweep_dir: str | Path) -> str:
    """Turn the ``storage`` option into an absolute, process-independent URL.

    Jobs may run in another working directory (``hydra.job.chdir``) or on another
    machine sharing the file system, so relative file paths are made absolute
    here, in the sweeper process.
    """
    sweep_dir = Path(sweep_dir).absolute()
    if storage is None or str(storage).strip() == "":
        return f"{SQLITE_PREFIX}{sweep_dir / DB_FILE}"
    storage = str(storage).strip()
    if storage == "journal":
        return f"{JOURNAL_PREFIX}{sweep_dir / JOURNAL_FILE}"
    if storage.startswith(JOURNAL_PREFIX):
        path = storage[len(JOURNAL_PREFIX) :]
        if not path:
            raise ValueError("storage 'journal:' needs a file path, e.g. journal:/data/hpo.journal")
        return f"{JOURNAL_PREFIX}{Path(path).expanduser().absolute()}"
    if storage.startswith(SQLITE_PREFIX):
        path, sep, query = storage[len(SQLITE_PREFIX) :].partition("?")
        if path and path != ":memory:" and not Path(path).is_absolute():
            return f"{SQLITE_PREFIX}{Path(path).absolute()}{sep}{query}"
    return storage


def open_storage(url: str) -> BaseStorage:
    """Storage object for a URL from :func:`resolve_storage_url` (cached per process)."""
    with _lock:
        storage = _storages.get(url)
        if storage is None:
            storage = _storages[url] = _create_storage(url)
        return storage


def _create_storage(url: str) -> BaseStorage:
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX) :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith(SQLITE_PREFIX):
        path = url[len(SQLITE_PREFIX) :].partition("?")[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite:"):
        engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT}
    return RDBStorage(url, engine_kwargs=engine_kwargs)


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"Unknown sampler {name!r}: expected 'tpe' or 'random'")


def make_pruner(spec: Mapping[str, Any] | None) -> optuna.pruners.BasePruner:
    """Pruner from a ``PrunerConf``-shaped mapping (``None`` -> never prune)."""
    spec = dict(spec or {})
    kind = str(spec.get("type") or "none").lower()
    if kind == "none":
        return optuna.pruners.NopPruner()
    if kind == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=int(spec.get("n_startup_trials", 5)),
            n_warmup_steps=int(spec.get("n_warmup_steps", 0)),
            interval_steps=int(spec.get("interval_steps", 1)),
        )
    if kind == "hyperband":
        max_resource = spec.get("max_resource", "auto")
        if max_resource is None:
            max_resource = "auto"
        elif max_resource != "auto":
            max_resource = int(max_resource)
        return optuna.pruners.HyperbandPruner(
            min_resource=int(spec.get("min_resource", 1)),
            max_resource=max_resource,
            reduction_factor=int(spec.get("reduction_factor", 3)),
        )
    raise ValueError(f"Unknown pruner type {kind!r}: expected 'none', 'median' or 'hyperband'")
