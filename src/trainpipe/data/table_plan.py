"""Which columns of a table are inputs, of what kind: inferred from the data, or declared with
`data.categorical`, `data.numeric`, `data.drop` (and `data.features`); and the rows whose target
is missing. Bad declarations are DataErrors naming the key (exit 2, nothing written)."""

from __future__ import annotations

import logging
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc

from trainpipe.data import columns as cols
from trainpipe.errors import DataError

log = logging.getLogger(__name__)

DECLARED_KEYS = ("features", "categorical", "numeric", "drop")


def check_declared(ds: datasets.Dataset, conf: dict[str, Any], where: str) -> None:
    """Every column a `data.*` list names exists."""
    for key in DECLARED_KEYS:
        for column in conf.get(key) or []:
            if column not in ds.column_names:
                raise DataError(
                    f"data.{key}: column {column!r} not found in {where} "
                    f"(columns: {', '.join(ds.column_names)})"
                )
    overlap = set(conf.get("categorical") or []) & set(conf.get("numeric") or [])
    if overlap:
        raise DataError(f"data.categorical: {sorted(overlap)} also listed in data.numeric")


def candidate_columns(ds: datasets.Dataset, conf: dict[str, Any]) -> list[str]:
    """The input columns before kinds are known: data.features (or all but the target), less
    data.drop, in the table's order."""
    target = conf["target"]
    wanted = conf.get("features") or [c for c in ds.column_names if c != target]
    dropped = set(conf.get("drop") or [])
    return [c for c in wanted if c not in dropped and c != target]


def drop_missing_target(
    raw: datasets.DatasetDict, target: str, conf: dict[str, Any], where: str
) -> datasets.DatasetDict:
    """Rows without a target are dropped and counted, or refused (`data.drop_missing_target`)."""
    missing = {name: split.data.column(target).null_count for name, split in raw.items()}
    total = sum(missing.values())
    if not total:
        return raw
    if not conf.get("drop_missing_target", True):
        raise DataError(
            f"data.target: column {target!r} has {total} missing value(s) in {where}; "
            "drop those rows (data.drop_missing_target=true) or fill them"
        )
    log.warning("data.target: %d row(s) without a target %r dropped", total, target)
    return datasets.DatasetDict(
        {
            name: split.filter(
                lambda batch: [v is not None for v in batch[target]],
                batched=True,
                input_columns=None,
                desc="drop rows without a target",
            )
            if missing[name]
            else split
            for name, split in raw.items()
        }
    )


def check_finite(raw: datasets.DatasetDict, names: list[str], where: str) -> None:
    """Missing numbers are imputed; inf / NaN read from the data stay errors (a data bug)."""
    for split_name, split in raw.items():
        for name in names:
            column = split.data.column(name)
            if pa.types.is_floating(column.type):
                valid = column.drop_null()
                bad = len(valid) - pc.sum(pc.is_finite(valid)).as_py() if len(valid) else 0
                if bad:
                    raise DataError(
                        f"data.features: column {name!r} has {bad} non-finite value(s) (inf/nan) "
                        f"in the {split_name} split of {where}"
                    )


def column_kinds(
    train: Any, candidates: list[str], conf: dict[str, Any]
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(column → numeric | categorical | datetime, excluded columns with the reason) from the
    training rows (a pandas DataFrame) and the declarations."""
    declared_categorical = set(conf.get("categorical") or [])
    declared_numeric = set(conf.get("numeric") or [])
    kinds: dict[str, str] = {}
    excluded: list[dict[str, str]] = []
    for name in candidates:
        series = train[name]
        if name in declared_numeric:
            try:
                cols.numbers(series, name)
            except ValueError as err:
                raise DataError(f"data.numeric: {err}") from None
            kinds[name] = "numeric"
        elif name in declared_categorical:
            if cols.is_id_like(series):
                raise DataError(
                    f"data.categorical: column {name!r} has a different value in nearly every "
                    f"row ({series.nunique()} of {series.notna().sum()}): an id, not a category; "
                    "add it to data.drop"
                )
            kinds[name] = "categorical"
        else:
            kind = cols.column_kind(series)
            if kind == "id":
                excluded.append({"name": name, "reason": "a different value in every row: an id"})
            elif kind == "empty":
                excluded.append({"name": name, "reason": "no values"})
            else:
                kinds[name] = kind
    if not kinds:
        raise DataError(
            f"data.features: no usable column besides the target {conf['target']!r}"
            + (f" (excluded: {', '.join(e['name'] for e in excluded)})" if excluded else "")
        )
    for name, kind in kinds.items():
        if kind == "datetime":
            try:
                cols.day_numbers(train[name], name)
            except ValueError as err:
                raise DataError(f"data.features: {err}") from None
    return kinds, excluded
