"""What `trainpipe predict` reads, one registered reader per kind of input (`data.reader`).

A reader opens `data` (the `data` section of configs/predict.yaml) and hands out its rows as
Arrow record batches of any size, plus the column names (checked against the model before
anything is scored) and a digest of the content (the resume key and the MLflow record). The
scorer cuts the batches into chunks of exactly `chunk_rows` rows itself, so chunk boundaries —
and so resuming — never depend on how a reader happens to batch.

Adding a kind of input is one registration, as SQL and a folder of images are (below):

    register_reader(ReaderKind("sql", (), "trainpipe.predict.sql_reader:SqlReader", keys=("uri",)))

`data.reader=auto` picks a kind by the path's extension, by `folders=True` for a directory, or
by `keys` that are set (a `data.uri`: SQL); otherwise it is only chosen by name. The opener is
`"module:function"`, imported only when data is read (this module stays torch- and pyarrow-free
for config errors), called with the `data` section and returning a `Reader`. Any keys the new
reader needs (`data.query`) are declared in configs/predict.yaml.

Optional reader attributes the scorer honours: `base` (the folder relative file paths in the rows
are resolved from: a table's own folder), `passed` (columns copied to every output, as `keep`
ones: a folder's `path`), `key` (the config key errors about the input name) and
`match(inputs, kind)` (a reader that is not a table — a folder of images — refuses a model of
another data kind and names its column as the model reads it).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from trainpipe.errors import ConfigError, DataError

READ_BLOCK_ROWS = 65536  # rows per batch a file reader hands out (the scorer re-cuts them)


class Reader(Protocol):
    columns: list[str]  # every column of the input, in order
    rows: int | None  # how many rows, if known before reading them (the progress total)

    def batches(self) -> Iterator[Any]:
        """The rows, in order, as pyarrow RecordBatches (or Tables) of any size."""
        ...

    def digest(self) -> str:
        """The input's content (same rows → same digest): keys resuming and the MLflow record."""
        ...

    def describe(self) -> str:
        """The input for people and the MLflow record (a path, a query)."""
        ...


@dataclass(frozen=True)
class ReaderKind:
    name: str
    extensions: tuple[str, ...]  # file name endings `data.reader=auto` picks it by
    opener: str  # "module:function": (data section) → Reader
    folders: bool = False  # `auto` picks it for a data.path that is a directory
    keys: tuple[str, ...] = ()  # `auto` picks it when these data keys are set (and no path)

    def open(self, data: dict[str, Any]) -> Reader:
        module, _, function = self.opener.partition(":")
        return getattr(importlib.import_module(module), function)(data)


READERS: dict[str, ReaderKind] = {}


def register_reader(kind: ReaderKind) -> ReaderKind:
    READERS[kind.name] = kind
    return kind


def reader_for(data: dict[str, Any]) -> ReaderKind:
    """The registered reader `data.reader` names, or (auto) the one whose extension the path has;
    ConfigError naming the key otherwise. No file is opened."""
    name = data["reader"]
    if name != "auto":
        if name not in READERS:
            raise ConfigError("data.reader", f"unknown reader {name!r}; known: {sorted(READERS)}")
        return READERS[name]
    path = str(data.get("path") or "")
    for kind in READERS.values():
        if kind.extensions and path.lower().endswith(kind.extensions):
            return kind
        if path and kind.folders and Path(path).expanduser().is_dir():
            return kind
        if not path and kind.keys and all(data.get(k) for k in kind.keys):
            return kind
    if not path:
        raise ConfigError("data.path", "is required: the file or folder to score (or data.uri)")
    known = sorted(e for kind in READERS.values() for e in kind.extensions)
    raise ConfigError(
        "data.path",
        f"cannot tell how to read {path!r} by its extension (known: {known}); set data.reader",
    )


def input_file(data: dict[str, Any]) -> Path:
    """The existing file `data.path` names (DataError naming it otherwise)."""
    if not data.get("path"):
        raise ConfigError("data.path", "is required for this reader")
    path = Path(data["path"]).expanduser()
    if not path.is_file():
        raise DataError(f"data.path: no file at {str(path)!r}")
    return path


# -- the built-in file readers ---------------------------------------------------------------
class FileReader:
    """A file read in blocks: the digest is its bytes' (config/sources.py: file_digest)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.path = input_file(data)
        self.base = self.path.parent  # relative file paths in a table are beside it
        self.columns: list[str] = []
        self.rows: int | None = None  # when known up front (the progress display's total)

    def digest(self) -> str:
        from trainpipe.config.sources import file_digest

        return file_digest(self.path)

    def describe(self) -> str:
        return str(self.path.resolve())


class ParquetReader(FileReader):
    def __init__(self, data: dict[str, Any]) -> None:
        import pyarrow.parquet as pq

        super().__init__(data)
        try:
            self.file = pq.ParquetFile(self.path)
        except Exception as err:
            raise DataError(f"data.path: {self.path} is not a Parquet file ({err})") from None
        self.columns = list(self.file.schema_arrow.names)
        self.rows = self.file.metadata.num_rows

    def batches(self) -> Iterator[Any]:
        return self.file.iter_batches(batch_size=READ_BLOCK_ROWS)


class CsvReader(FileReader):
    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        try:
            self.columns = list(self._open().schema.names)
        except Exception as err:
            raise DataError(f"data.path: cannot read {self.path} as CSV ({err})") from None

    def _open(self) -> Any:
        import pyarrow.csv as pacsv

        # the whole file's columns typed from its first block: later blocks are cast to them
        return pacsv.open_csv(self.path, read_options=pacsv.ReadOptions(block_size=1 << 22))

    def batches(self) -> Iterator[Any]:
        return iter(self._open())


class JsonLinesReader(FileReader):
    """One JSON object per line (`.jsonl`, `.json` written as lines)."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        try:
            first = next(iter(self._open()), None)
        except Exception as err:
            raise DataError(f"data.path: cannot read {self.path} as JSON lines ({err})") from None
        self.columns = list(first.schema.names) if first is not None else []

    def _open(self) -> Any:
        import pyarrow.json as pajson

        return pajson.open_json(self.path, read_options=pajson.ReadOptions(block_size=1 << 22))

    def batches(self) -> Iterator[Any]:
        return iter(self._open())


class TextReader(FileReader):
    """One prompt per line (a trailing newline ends the last line, it starts no empty prompt):
    the column `prompt`, what a language model reads."""

    COLUMN = "prompt"

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        self.columns = [self.COLUMN]

    def batches(self) -> Iterator[Any]:
        import pyarrow as pa

        lines: list[str] = []
        with open(self.path, encoding="utf-8", newline="") as handle:
            for line in handle:
                lines.append(line.removesuffix("\n").removesuffix("\r"))
                if len(lines) == READ_BLOCK_ROWS:
                    yield pa.record_batch({self.COLUMN: pa.array(lines, pa.string())})
                    lines = []
        if lines:
            yield pa.record_batch({self.COLUMN: pa.array(lines, pa.string())})


register_reader(ReaderKind("parquet", (".parquet", ".pq"), f"{__name__}:ParquetReader"))
register_reader(ReaderKind("csv", (".csv",), f"{__name__}:CsvReader"))
register_reader(ReaderKind("jsonl", (".jsonl", ".json", ".ndjson"), f"{__name__}:JsonLinesReader"))
register_reader(ReaderKind("text", (".txt",), f"{__name__}:TextReader"))
# a folder of pictures, one row per image: the image model's input (predict/image_folder.py)
register_reader(ReaderKind("images", (), "trainpipe.predict.image_folder:ImageFolderReader", True))
# the rows of a SQL query or table (data.uri + data.query | data.table): predict/sql_reader.py
register_reader(ReaderKind("sql", (), "trainpipe.predict.sql_reader:SqlReader", keys=("uri",)))
