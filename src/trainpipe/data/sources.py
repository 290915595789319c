"""Raw rows from where the config says: bundled digits, local files, or a Hub dataset — the
table loaders of the registered sources (config/sources.py), and the shared Hub and file loading.

Every source comes back as an on-disk `datasets.DatasetDict` (Arrow files in a cache dir), so the
`.map` preprocessing that follows is cached and reused by the next run (docs/architecture.md, "Data").
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import datasets
from filelock import FileLock

from trainpipe.config.sources import DIGITS_VERSION, SOURCES, source_of
from trainpipe.errors import DataError
from trainpipe.runtime.atomic import atomic_dir

log = logging.getLogger(__name__)

FILE_BUILDERS = {"csv": "csv", "parquet": "parquet", "json": "json"}


def describe_source(conf: Mapping[str, Any]) -> str:
    """The data as people name it: its path, its hub id, or the bundled set's name."""
    return source_of(conf).describe(conf)


def source_digest(conf: Mapping[str, Any], raw: datasets.DatasetDict) -> str:
    """Content digest of the loaded source (hub data: datasets' fingerprints of what was loaded)."""
    return source_of(conf).loaded_digest(conf, raw)


def load_source(conf: Mapping[str, Any]) -> datasets.DatasetDict:
    """Load the rows named by a resolved `data` config section, through its registered source."""
    if "table" not in getattr(SOURCES.get(conf["source"]), "kinds", ()):
        raise DataError(f"data.source: unknown source {conf['source']!r} for a table")
    return source_of(conf).load(conf, "table")


def load_digits(conf: Mapping[str, Any]) -> datasets.DatasetDict:
    """scikit-learn's bundled digits, written once to the cache as Arrow and memory-mapped after."""
    cache_dir = Path(conf["cache_dir"]).expanduser()
    target = cache_dir / "sources" / DIGITS_VERSION
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / f".{DIGITS_VERSION}.lock")):
        if not (target / "dataset_dict.json").is_file():
            from sklearn.datasets import load_digits as bundled_digits

            bunch = bundled_digits()
            columns: dict[str, Any] = {
                f"pixel_{i // 8}_{i % 8}": bunch.data[:, i].astype("float32")
                for i in range(bunch.data.shape[1])
            }
            columns["label"] = bunch.target.astype("int64")
            with atomic_dir(target) as staging:
                dataset = datasets.Dataset.from_dict(columns)
                datasets.DatasetDict({"train": dataset}).save_to_disk(str(staging))
    return datasets.load_from_disk(str(target))


def load_table_files(conf: Mapping[str, Any]) -> datasets.DatasetDict:
    """Rows of the csv / parquet / json files `data.path` names."""
    source = conf["source"]
    cache_dir = Path(conf["cache_dir"]).expanduser()
    return _load_files(source, conf["path"], source_of(conf).files(conf), cache_dir)


def load_hub_rows(conf: Mapping[str, Any]) -> datasets.DatasetDict:
    """A Hub dataset's rows, by its id `data.name`."""
    return load_hub(conf["name"], Path(conf["cache_dir"]).expanduser())


def _load_files(source: str, path: str, files: list[Path], cache_dir: Path) -> datasets.DatasetDict:
    if not files:
        raise DataError(
            f"data.path: no file matches {path!r} (a file, a glob such as data/*.{source}, "
            f"or a directory of files; working directory: {os.getcwd()})"
        )
    empty = [f for f in files if os.path.getsize(f) == 0]
    if empty:
        raise DataError(f"data.path: {empty[0]} is empty")
    try:
        return datasets.load_dataset(
            FILE_BUILDERS[source],
            data_files=[str(f) for f in files],
            cache_dir=str(cache_dir / "hf"),
        )
    except datasets.exceptions.DatasetGenerationError as err:
        cause = err.__cause__ or err
        raise DataError(
            f"data.path: cannot read {path!r} as {source}: {str(cause).splitlines()[0]}"
        ) from None
    except (ValueError, OSError) as err:
        if "corresponds to no data" in str(err):  # only a header line
            raise DataError(f"data.path: {path!r} has no rows") from None
        raise DataError(
            f"data.path: cannot read {path!r} as {source}: {str(err).splitlines()[0]}"
        ) from None


def _hub_reachable(timeout_s: float = 2.0) -> bool:
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def load_hub(name: str, cache_dir: Path) -> datasets.DatasetDict:
    # Offline (by setting, or because the Hub does not answer) we read only the local cache,
    # so a missing dataset fails at once instead of after the client's retry loop.
    offline = datasets.config.HF_HUB_OFFLINE or not _hub_reachable()
    previous = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = offline
    try:
        loaded = datasets.load_dataset(name, cache_dir=str(cache_dir / "hf"))
    except Exception as err:  # the client raises many types for "not found" / "no network"
        where = (
            "is not in the local cache and the Hub is unreachable (offline)"
            if offline
            else "could not be loaded"
        )
        raise DataError(
            f"data.name: hub dataset {name!r} {where}: {str(err).splitlines()[0]}"
        ) from None
    finally:
        datasets.config.HF_HUB_OFFLINE = previous
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded
