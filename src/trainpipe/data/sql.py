"""Rows from a database: `data=sql data.uri=… data.query="SELECT …"` (or `data.table=…`).

Any SQLAlchemy dialect the user installs (DuckDB — embedded, no server — and PostgreSQL through
the `sql` and `postgres` extras). The rows are read in chunks of `data.chunk_size` (the driver
streams them), then written once as Parquet under `<cache_dir>/sources/sql-<digest>/`, which
`datasets` loads and caches like any file: the `.map`s that follow are reused while the rows
stay the same.

The digest is computed from the rows read (names, types, values): a changed row is a new digest,
so a new job (config/identity.py). It is what names the job, so the query runs when the job is
named and again when the data is loaded: a database gives no cheaper proof that a table has not
changed. Credentials come from the URI or from the driver's environment (PostgreSQL:
PGPASSWORD, PGUSER, ~/.pgpass); the URI's password is masked in every message (`mask_uri`).

No torch and no datasets at import: the digest is computed while the config is resolved.
"""

from __future__ import annotations

import decimal
import hashlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from trainpipe.config.secrets import mask_passwords
from trainpipe.errors import DataError

DRIVER_EXTRAS = {"postgresql": "postgres", "duckdb": "sql"}


def mask_uri(text: str, uri: str | None = None) -> str:
    """`text` with the password of any URL in it (and of `uri`, wherever it appears) masked."""
    masked = mask_passwords(text)
    password = _password(uri) if uri else None
    return masked.replace(password, "***") if password else masked


def _password(uri: str) -> str | None:
    match = re.match(r"^[\w+.-]+://[^/\s:@]*:([^@\s]*)@", uri)
    return match.group(1) if match and match.group(1) else None


def rows_digest(data: Mapping[str, Any]) -> str:
    """The content digest of the rows the config names (reads them; see the module doc)."""
    return read_rows(data)[0]


def load_sql_rows(data: Mapping[str, Any]) -> Any:
    """The rows as an on-disk `datasets.DatasetDict` (one `train` split)."""
    import datasets

    _, path = read_rows(data)
    cache_dir = Path(data["cache_dir"]).expanduser()
    return datasets.load_dataset("parquet", data_files=[str(path)], cache_dir=str(cache_dir / "hf"))


def read_rows(data: Mapping[str, Any]) -> tuple[str, Path]:
    """(digest, Parquet file) of the rows: read in chunks, written once per digest."""
    frame = _fetch(data)
    if frame.empty:
        raise DataError(f"{_key(data)}: the {_what(data)} returned no rows")
    digest = _frame_digest(frame)
    cache_dir = Path(data["cache_dir"]).expanduser()
    target = cache_dir / "sources" / f"sql-{digest}" / "rows.parquet"
    if not target.is_file():
        from trainpipe.runtime.atomic import atomic_path

        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            frame.to_parquet(tmp, index=False)
    return digest, target


def _fetch(data: Mapping[str, Any]) -> Any:
    import pandas as pd

    return pd.concat(list(fetch_chunks(data)), ignore_index=True)


def fetch_chunks(data: Mapping[str, Any]) -> Iterator[Any]:
    """The rows as DataFrames of up to `data.chunk_size` rows, in the order the database returns
    them (Decimal columns as floats); DataError naming the key, the password masked, otherwise."""
    import pandas as pd
    import sqlalchemy
    from sqlalchemy import exc

    uri = data["uri"]
    try:
        engine = sqlalchemy.create_engine(uri)
    except exc.NoSuchModuleError:
        dialect = uri.split(":", 1)[0].split("+", 1)[0]
        extra = DRIVER_EXTRAS.get(dialect)
        hint = f" (pip install 'trainpipe[{extra}]')" if extra else ""
        raise DataError(
            f"data.uri: no SQLAlchemy dialect for {dialect!r} installed{hint}"
        ) from None
    except (exc.ArgumentError, ValueError) as err:
        raise DataError(f"data.uri: {mask_uri(_first_line(err), uri)}") from None
    except ModuleNotFoundError as err:
        raise DataError(f"data.uri: the database driver is not installed ({err.name})") from None
    try:
        with engine.connect() as connection:
            statement = _statement(data, connection)
            # stream_results: a server-side cursor where the driver has one, so chunks are
            # fetched as read instead of the whole result at once
            chunks = pd.read_sql_query(
                statement,
                connection.execution_options(stream_results=True),
                chunksize=int(data.get("chunk_size") or 50_000),
            )
            for chunk in chunks:
                yield _plain_types(chunk)
    except pd.errors.DatabaseError as err:  # pandas' wrapper of the driver's error
        raise _query_error(data, err.__cause__ or err, uri) from None
    except exc.NoSuchTableError:
        raise DataError(f"data.table: no table {data['table']!r} in {mask_uri(uri)}") from None
    except (exc.OperationalError, exc.InterfaceError) as err:
        message = mask_uri(_first_line(err.orig or err), uri)
        if _is_query_error(message):
            raise DataError(f"{_key(data)}: {message}") from None
        raise DataError(f"data.uri: cannot connect to {mask_uri(uri)}: {message}") from None
    except exc.SQLAlchemyError as err:
        raise _query_error(data, err, uri) from None
    finally:
        engine.dispose()


def _query_error(data: Mapping[str, Any], err: BaseException, uri: str) -> DataError:
    """The driver's own words (first line, password masked), under the key that named the SQL."""
    orig = getattr(err, "orig", None) or err
    message = _first_line(orig)
    if not isinstance(orig, Exception) or message.startswith("("):
        message = re.sub(r"^\([\w.]+\)\s*", "", message)
    return DataError(f"{_key(data)}: {mask_uri(message, uri)}")


def _statement(data: Mapping[str, Any], connection: Any) -> Any:
    import sqlalchemy

    if data.get("query"):
        return sqlalchemy.text(data["query"])
    # quoted by the dialect, not reflected: reflection needs catalog tables some engines lack
    quote = connection.dialect.identifier_preparer.quote
    name = ".".join(quote(part) for part in str(data["table"]).split("."))
    return sqlalchemy.text(f"SELECT * FROM {name}")


def _is_query_error(message: str) -> bool:
    """DuckDB reports a bad query as an OperationalError-like error too; a server that refuses
    the connection says so in words these do not match."""
    lowered = message.lower()
    return any(
        word in lowered
        for word in ("syntax", "does not exist", "catalog error", "parser error", "binder error")
    )


def _plain_types(frame: Any) -> Any:
    """Decimal columns (SQL NUMERIC) as floats: Arrow would keep them as decimals, which the
    features are not."""
    for name in frame.columns:
        column = frame[name]
        if column.dtype == object:
            values = column.dropna()
            if len(values) and all(isinstance(v, decimal.Decimal) for v in values.head(100)):
                frame[name] = column.astype(float)
    return frame


def _frame_digest(frame: Any) -> str:
    import pandas as pd

    digest = hashlib.sha256()
    digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    # values hashed per column (object columns by their text), independent of chunking
    for name in frame.columns:
        column = frame[name]
        if column.dtype == object:
            column = column.map(repr)
        digest.update(pd.util.hash_pandas_object(column, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def rows_hash(frame: Any) -> bytes:
    """One hash per row (object columns by their text): fed chunk by chunk into a digest, the
    same rows give the same digest however they were chunked."""
    import pandas as pd

    shown = frame.assign(
        **{n: frame[n].map(repr) for n in frame.columns if frame[n].dtype == object}
    )
    return pd.util.hash_pandas_object(shown, index=False).to_numpy().tobytes()


def _key(data: Mapping[str, Any]) -> str:
    return "data.query" if data.get("query") else "data.table"


def _what(data: Mapping[str, Any]) -> str:
    return "query" if data.get("query") else f"table {data.get('table')!r}"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
