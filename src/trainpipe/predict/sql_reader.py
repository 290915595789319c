"""`trainpipe predict data.uri=duckdb:///shop.duckdb data.table=customers` (or `data.query=…`):
the rows of a SQL query scored in chunks, through the training side's SQL code (data/sql.py:
any SQLAlchemy dialect, the driver's errors under the key that named the SQL, the URI's password
masked in every message, and so in every tag of the MLflow record).

The query runs twice: once for the digest of the rows it returns (the resume key and the MLflow
record: a changed row is another job), once to score them, a chunk at a time — so memory stays
bounded whatever the result's size. A database gives no cheaper proof that rows are unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from trainpipe.errors import ConfigError, DataError
from trainpipe.predict.readers import READ_BLOCK_ROWS


class SqlReader:
    rows: int | None

    def __init__(self, data: dict[str, Any]) -> None:
        from trainpipe.config.sources import SOURCES

        source = SOURCES["sql"]
        problem = source.check(data)  # the training side's rules: a uri, one of query/table
        if problem is not None:
            raise ConfigError(*problem)
        self.data = {**data, "chunk_size": data.get("chunk_size") or READ_BLOCK_ROWS}
        self.key = "data.query" if data.get("query") else "data.table"
        self.shown = source.describe(data)  # the password masked
        self._digest, self.columns, self.rows = self._read_digest()

    def _read_digest(self) -> tuple[str, list[str], int]:
        from trainpipe.data.sql import fetch_chunks, rows_hash

        digest, columns, rows = hashlib.sha256(), None, 0
        for frame in fetch_chunks(self.data):
            if columns is None:
                columns = [str(c) for c in frame.columns]
                digest.update(repr(columns).encode())
            digest.update(rows_hash(frame))
            rows += len(frame)
        if not rows:
            raise DataError(f"{self.key}: {self.shown} returned no rows to score")
        return digest.hexdigest(), columns or [], rows

    def batches(self) -> Iterator[Any]:
        import pyarrow as pa

        from trainpipe.data.sql import fetch_chunks

        for frame in fetch_chunks(self.data):
            yield pa.Table.from_pandas(frame, preserve_index=False)

    def digest(self) -> str:
        return self._digest

    def describe(self) -> str:
        return self.shown
