"""The registry of data sources: each source, by the name `data.source` gives, owns its loading,
the files it reads and its content digest.

A new source is one `register(Source(...))` (or a subclass for other files or another digest):
validation (config/validate.py), the run identity (config/identity.py) and the data layer
(data/tables.py, data/text.py) look sources up here and know none by name.

Pure Python, no torch or datasets: the identity runs for `--cfg job` and config errors. A source
names its loaders as `"module:function"` strings, imported only when data is loaded (they import
`datasets`); each takes the resolved `data` section and returns an on-disk `datasets.DatasetDict`:
rows for `table` data; for `text` data, documents in one `text` column and the files left out
(data.on_decode_error=skip).
"""

from __future__ import annotations

import bisect
import glob
import hashlib
import importlib
import importlib.metadata
import itertools
import os
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DIGITS_VERSION = "digits-v1"

_file_digests: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class Source:
    """A place data comes from. `loaders`: data kind (`table`, `text`, …) → "module:function"."""

    name: str
    loaders: Mapping[str, str]
    # the config key that names the data, for messages: data.path, data.name, data.source
    key: str = "data.source"
    # its content is known only once loaded (a hub name may point at new data): digest() is the
    # id, `loaded_digest` the content; the pipeline prepares such data every time
    digest_after_load: bool = False
    # where the data lives, in the words of MLflow's dataset `source_type` (lineage)
    origin: str = "local"

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.loaders)

    @property
    def reads_files(self) -> bool:
        """`data.path` names its files (a file, a glob, a list or a directory)."""
        return self.key == "data.path"

    def files(self, data: Mapping[str, Any]) -> list[Path]:
        """The files the data is read from, in a stable order (none for a source without files).
        URLs (s3://, gs://, file://, …): their local copies in the cache (data/remote.py)."""
        if not self.reads_files:
            return []
        path = data.get("path")
        if _is_url(path):
            return _call("trainpipe.data.remote:local_copies", data)
        return matching_files(path)

    def digest(self, data: Mapping[str, Any]) -> str:
        """Content digest of the data the config names: same bytes → same digest, wherever they
        live (every file's bytes and name); without files, the source and its name."""
        if self.reads_files:
            return _digest([f"{p.name}:{file_digest(p)}" for p in self.files(data)])
        return _digest([f"{self.name}:{data.get('name')}"])

    def describe(self, data: Mapping[str, Any]) -> str:
        """The data as people name it: its path, its hub id, or the source's name."""
        path = data.get("path")
        if path:
            return path if isinstance(path, str) else ", ".join(map(str, path))
        return str(data.get("name") or self.name)

    def check(self, data: Mapping[str, Any]) -> tuple[str, str] | None:
        """A problem with the keys this source needs, as (key, message), or None."""
        if self.reads_files and not data.get("path"):
            return "data.path", f"is required for data source {self.name!r} (a file path or glob)"
        return None

    def load(self, data: Mapping[str, Any], kind: str) -> Any:
        """The raw `datasets.DatasetDict` of `kind` data (imports the loader, and datasets)."""
        module, _, function = self.loaders[kind].partition(":")
        return getattr(importlib.import_module(module), function)(data)

    def loaded_digest(self, data: Mapping[str, Any], loaded: Any) -> str:
        """The content digest once loaded: `digest(data)`, or for a `digest_after_load` source
        datasets' fingerprints of what was loaded."""
        if not self.digest_after_load:
            return self.digest(data)
        blob = "|".join(f"{name}:{split._fingerprint}" for name, split in sorted(loaded.items()))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class BundledSource(Source):
    """Data shipped inside a package: its digest is the bundled copy's version."""

    def digest(self, data: Mapping[str, Any]) -> str:
        return _digest([DIGITS_VERSION, _version("scikit-learn")])


class ImageFolderSource(Source):
    """A folder of pictures, one sub-folder per class: its digest covers every file's bytes and
    its path inside the folder (a picture moved to another class folder is other data)."""

    def digest(self, data: Mapping[str, Any]) -> str:
        root = Path(os.path.expanduser(str(data.get("path"))))
        return _digest(
            [
                f"{p.relative_to(root) if p.is_relative_to(root) else p.name}:{file_digest(p)}"
                for p in self.files(data)
            ]
        )


class StdlibSource(Source):
    """This interpreter's standard library source, one document per *.py file."""

    def files(self, data: Mapping[str, Any]) -> list[Path]:
        files = _stdlib_files(stdlib_root())
        if data.get("max_bytes") is None:
            return files
        # the corpus is the first max_bytes of these files in this order: the files past the
        # cap are never read, so they are neither loaded nor hashed (all of them: ~30 MB, ~1.3 s)
        ends = list(itertools.accumulate(f.stat().st_size for f in files))
        return files[: bisect.bisect_left(ends, int(data["max_bytes"])) + 1]

    def digest(self, data: Mapping[str, Any]) -> str:
        return _digest([f"{p.name}:{file_digest(p)}" for p in self.files(data)])

    def describe(self, data: Mapping[str, Any]) -> str:
        return f"stdlib ({stdlib_root()})"


class SqlSource(Source):
    """Rows a SQL query (or a whole table) returns, through SQLAlchemy (data/sql.py). Its digest
    is that of the rows read: a changed row is a new job."""

    def digest(self, data: Mapping[str, Any]) -> str:
        if self.check(data) is not None:  # validation reports it; no query to run yet
            return _digest([f"{self.name}:unset"])
        return _call("trainpipe.data.sql:rows_digest", data)

    def describe(self, data: Mapping[str, Any]) -> str:
        masked = _call("trainpipe.data.sql:mask_uri", str(data.get("uri")))
        return f"{masked} ({'query' if data.get('query') else 'table ' + str(data.get('table'))})"

    def check(self, data: Mapping[str, Any]) -> tuple[str, str] | None:
        if not data.get("uri"):
            return "data.uri", "is required for data=sql (e.g. duckdb:///shop.duckdb)"
        if bool(data.get("query")) == bool(data.get("table")):
            return "data.query", "set exactly one of data.query (SELECT …) and data.table"
        return None


def _is_url(path: Any) -> bool:
    paths = [path] if isinstance(path, str) else list(path or [])
    return any("://" in str(p) for p in paths)


def _call(target: str, *args: Any) -> Any:
    """`module:function(*args)`, imported when called (the data layer, above this one)."""
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)(*args)


SOURCES: dict[str, Source] = {}


def register(source: Source) -> Source:
    """Make `source` available as `data.source=<its name>`."""
    SOURCES[source.name] = source
    return source


def source_of(data: Mapping[str, Any]) -> Source:
    """The registered source of a `data` section (KeyError if none: validation reports it)."""
    return SOURCES[data["source"]]


def kinds() -> tuple[str, ...]:
    """Every kind of data some registered source serves, in registration order."""
    return tuple(dict.fromkeys(kind for source in SOURCES.values() for kind in source.kinds))


def serving(kind: str) -> tuple[str, ...]:
    """The names of the sources that serve `kind` data."""
    return tuple(name for name, source in SOURCES.items() if kind in source.kinds)


def matching_files(path: Any) -> list[Path]:
    """The files `path` names (a file, a glob, a list of them, or a directory standing for the
    files inside it), sorted; empty when it names none."""
    if not path:
        return []
    patterns = path if not isinstance(path, str) else [path]
    found: set[str] = set()
    for pattern in patterns:
        found.update(glob.glob(os.path.expanduser(str(pattern)), recursive=True))
    files = []
    for name in sorted(found):
        entry = Path(name)
        files.extend(
            sorted(p for p in entry.rglob("*") if p.is_file()) if entry.is_dir() else [entry]
        )
    return files


def stdlib_root() -> Path:
    """This interpreter's standard library dir."""
    return Path(sysconfig.get_paths()["stdlib"])


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


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


TABLE_FILES = "trainpipe.data.sources:load_table_files"
# `image` data: pictures and their labels (tasks/images/data.py); a table serves it when one of
# its columns holds the images (paths relative to the table, or the bytes)
IMAGE_TABLE = "trainpipe.tasks.images.sources:load_image_table"
register(BundledSource("digits", {"table": "trainpipe.data.sources:load_digits"}, origin="code"))
register(Source("csv", {"table": TABLE_FILES, "image": IMAGE_TABLE}, key="data.path"))
register(Source("parquet", {"table": TABLE_FILES, "image": IMAGE_TABLE}, key="data.path"))
register(Source("json", {"table": TABLE_FILES, "image": IMAGE_TABLE}, key="data.path"))
register(
    Source(
        "hub",
        {
            "table": "trainpipe.data.sources:load_hub_rows",
            "text": "trainpipe.data.text:hub_documents",
            "image": "trainpipe.tasks.images.sources:load_hub_images",
        },
        key="data.name",
        digest_after_load=True,
        origin="hugging_face",
    )
)
register(
    SqlSource("sql", {"table": "trainpipe.data.sql:load_sql_rows"}, key="data.uri", origin="sql")
)
register(Source("text", {"text": "trainpipe.data.text:read_text_files"}, key="data.path"))
register(StdlibSource("stdlib", {"text": "trainpipe.data.text:stdlib_documents"}, origin="code"))
register(
    ImageFolderSource(
        "images", {"image": "trainpipe.tasks.images.sources:load_image_folder"}, key="data.path"
    )
)
register(
    BundledSource(
        "digits_images",
        {"image": "trainpipe.tasks.images.sources:load_digits_images"},
        origin="code",
    )
)
