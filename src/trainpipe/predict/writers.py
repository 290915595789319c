"""Where `trainpipe predict` writes: per-chunk part files, then one output file by extension.

Each scored chunk is a Parquet part file written atomically (runtime/atomic.py): a part is there
completely or not at all, so a rerun after a kill continues after the last one. At the end the
parts are streamed, one at a time, into the output's format in a temp file that one rename
publishes: the output's final name never holds half a file, and memory holds one part at most.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainpipe.errors import ConfigError
from trainpipe.runtime.atomic import atomic_write, fsync_dir

PART = "part-{:06d}.parquet"


def _parquet(path: Path, schema: Any) -> Any:
    import pyarrow.parquet as pq

    return pq.ParquetWriter(path, schema)


def _csv(path: Path, schema: Any) -> Any:
    import pyarrow.csv as pacsv

    return pacsv.CSVWriter(path, schema)


class _JsonLines:
    """One JSON object per row (pyarrow writes no JSON): each part through pandas."""

    def __init__(self, path: Path, schema: Any) -> None:
        self.handle = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def write_table(self, table: Any) -> None:
        if table.num_rows:
            text = table.to_pandas().to_json(orient="records", lines=True, force_ascii=False)
            self.handle.write(text if text.endswith("\n") else text + "\n")

    def close(self) -> None:
        self.handle.close()


# output file ending → (path, arrow schema) → a writer with write_table(table) and close()
FORMATS: dict[str, Callable[[Path, Any], Any]] = {
    ".parquet": _parquet,
    ".csv": _csv,
    ".jsonl": _JsonLines,
}


def check_output(value: str) -> Path:
    """The output path, if its format is known and its directory exists (ConfigError on `output`
    otherwise). Nothing is created."""
    path = Path(value)
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(
            "output", f"unknown output format {path.suffix or value!r}; known: {sorted(FORMATS)}"
        )
    if not path.parent.is_dir():
        raise ConfigError("output", f"directory {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise ConfigError("output", f"{value!r} is a directory")
    return path


def write_part(directory: Path, index: int, table: Any) -> Path:
    import pyarrow.parquet as pq

    # uncompressed: a part is read back once, by `publish`, moments later
    return atomic_write(
        directory / PART.format(index),
        lambda handle: pq.write_table(table, handle, compression="none"),
    )


def done_parts(directory: Path) -> int:
    """How many chunks are scored: the parts 0, 1, … present without a gap."""
    count = 0
    while (directory / PART.format(count)).is_file():
        count += 1
    return count


def publish(directory: Path, parts: int, output: Path, count_nulls: str | None = None) -> int:
    """Concatenate parts 0..parts-1 into `output`'s format in a temp file in `directory`, then
    rename it to `output`. Column types are unified over all parts (a kept column that is all
    null in one chunk is typed by the others). Returns the nulls in column `count_nulls`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = [directory / PART.format(i) for i in range(parts)]
    schema = pa.unify_schemas([pq.read_schema(p) for p in paths], promote_options="permissive")
    schema = schema.remove_metadata()  # pandas' per-part metadata is not the output's
    tmp = directory / f"output{output.suffix}"
    writer = FORMATS[output.suffix.lower()](tmp, schema)
    nulls = 0
    try:
        for path in paths:
            table = pq.read_table(path).cast(schema)
            nulls += table.column(count_nulls).null_count if count_nulls else 0
            writer.write_table(table)
    finally:
        writer.close()
    tmp.replace(output)
    fsync_dir(output.parent)
    return nulls


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
