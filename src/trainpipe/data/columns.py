"""Feature engineering of a table, learned on the training split and applied everywhere the same.

A *column plan* (plain JSON, stored in the model's spec: no pickle) says what each input column
is and carries every statistic learned from the training rows:

- `numeric`: the training median (imputes a missing value) and whether an is-missing indicator
  input is added (only for columns that had missing values in training);
- `dates`: the same median and indicator, on the date's day number; each date becomes year,
  month / day of week / day of year as (sin, cos) pairs, and the elapsed days since 1970;
- `categorical`: the training categories; a value's index is 2 + its position, 1 = unknown (a
  category never seen in training), 0 = missing. The model embeds each column (tasks/tabular);
- `excluded`: columns left out, with the reason (printed in the summary).

`encode_frame` turns raw rows (a pandas DataFrame: strings, NaN, dates as strings or datetimes)
into one float32 matrix: the numeric inputs first, then one category index per categorical
column (exact as float32 below 2**24 categories). One matrix keeps the loaders, the training
step and the serving path of all-numeric tables unchanged; the model splits it (model.py).
It runs once per row in training (inside the cached `Dataset.map`, data/tables.py), never per
batch, and in the registered model on each request.

numpy and pandas only: the registered model imports it to serve.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from trainpipe.console import first_of

MISSING_INDEX, UNKNOWN_INDEX, FIRST_CATEGORY = 0, 1, 2
DATE_PARTS = ("year", "month_sin", "month_cos", "dow_sin", "dow_cos", "doy_sin", "doy_cos", "days")
# a string column is dates when this share of its values starts like an ISO date (2024-01-31)
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
DATE_SHARE = 0.9
# a text column with a distinct value in (nearly) every row is an id, not a category
ID_MIN_ROWS = 20
ID_DISTINCT_SHARE = 0.9
EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
# columns of each kind named in the summary line; the rest are counted (all are in spec.json)
NAMES_SHOWN_PER_KIND = 8


def empty_plan() -> dict[str, list[dict[str, Any]]]:
    return {"numeric": [], "dates": [], "categorical": [], "excluded": []}


def legacy_plan(feature_names: list[str], means: list[float]) -> dict[str, Any]:
    """The plan of a model trained before plans existed: every column numeric, no indicators;
    a missing value is imputed with the training mean (the only statistic such a model kept)."""
    plan = empty_plan()
    plan["numeric"] = [
        {"name": n, "median": float(m), "indicator": False}
        for n, m in zip(feature_names, means, strict=True)
    ]
    return plan


def numeric_names(plan: dict[str, Any]) -> list[str]:
    """Names of the numeric inputs, in `encode_frame`'s column order."""
    names = [c["name"] for c in plan["numeric"]]
    names += [f"{c['name']}.{part}" for c in plan["dates"] for part in DATE_PARTS]
    names += [f"{c['name']}.missing" for c in (*plan["numeric"], *plan["dates"]) if c["indicator"]]
    return names


def embedding_sizes(plan: dict[str, Any]) -> list[list[int]]:
    """[rows of the table, width] of each categorical column's embedding: fastai's rule of thumb
    (1.6 · n^0.56, at most 50) for n categories + the unknown and missing indices."""
    sizes = []
    for column in plan["categorical"]:
        rows = len(column["categories"]) + FIRST_CATEGORY
        sizes.append([rows, int(min(50, round(1.6 * rows**0.56)))])
    return sizes


def describe_plan(plan: dict[str, Any]) -> str:
    """One line for the summary and the log: each kind with its first columns, the rest counted
    (the 8x8 digits' 64 pixel names made the summary box ~800 characters wide)."""

    def names(kind: str, extra: Any = None) -> str:
        named = [c["name"] + (extra(c) if extra else "") for c in plan[kind]]
        return first_of(named, NAMES_SHOWN_PER_KIND)

    parts = []
    if plan["numeric"]:
        parts.append(
            "numeric " + names("numeric", lambda c: " (+missing)" if c["indicator"] else "")
        )
    if plan["categorical"]:
        parts.append("categorical " + names("categorical", lambda c: f" ({len(c['categories'])})"))
    if plan["dates"]:
        parts.append("datetime " + names("dates"))
    if plan["excluded"]:
        parts.append("excluded " + names("excluded", lambda c: f" ({c['reason']})"))
    return "; ".join(parts)


# -- learning the plan ---------------------------------------------------------------------
def column_kind(series: pd.Series) -> str:
    """numeric | categorical | datetime | id | empty, from the values of the training rows."""
    values = series.dropna()
    if values.empty:
        return "empty"
    if pd.api.types.is_bool_dtype(series.dtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(series.dtype):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return "datetime"
    sample = values.head(1000)
    if all(hasattr(v, "year") and hasattr(v, "month") for v in sample):  # date / datetime objects
        return "datetime"
    text = sample.astype(str)
    if text.str.match(ISO_DATE).mean() >= DATE_SHARE:
        return "datetime"
    if is_id_like(series):
        return "id"
    return "categorical"


def is_id_like(series: pd.Series) -> bool:
    values = series.dropna()
    return len(values) >= ID_MIN_ROWS and values.nunique() >= ID_DISTINCT_SHARE * len(values)


def learn_plan(
    train: pd.DataFrame, kinds: dict[str, str], excluded: list[dict[str, str]]
) -> dict[str, Any]:
    """The plan of `kinds` (column → numeric | categorical | datetime) from the training rows."""
    plan = empty_plan()
    plan["excluded"] = list(excluded)
    for name, kind in kinds.items():
        series = train[name]
        if kind == "categorical":
            keys = category_keys(series).dropna().unique().tolist()
            plan["categorical"].append({"name": name, "categories": sorted(keys)})
            continue
        values = numbers(series, name) if kind == "numeric" else day_numbers(series, name)
        missing = bool(np.isnan(values).any())
        finite = values[~np.isnan(values)]
        median = float(np.median(finite)) if finite.size else 0.0
        entry = {"name": name, "median": median, "indicator": missing}
        plan["numeric" if kind == "numeric" else "dates"].append(entry)
    return plan


# -- applying it ---------------------------------------------------------------------------
def encode_frame(frame: pd.DataFrame, plan: dict[str, Any]) -> np.ndarray:
    """Raw rows → float32 [rows, numeric inputs + categorical columns] (see the module doc).
    ValueError naming the column for a value the plan cannot read (a word in a numeric column,
    inf, a date that does not parse)."""
    rows = len(frame)
    numeric, indicators = [], []
    for column in plan["numeric"]:
        values = numbers(frame[column["name"]], column["name"])
        _refuse_infinite(values, column["name"])
        numeric.append(np.where(np.isnan(values), column["median"], values))
        if column["indicator"]:
            indicators.append(np.isnan(values))
    for column in plan["dates"]:
        days = day_numbers(frame[column["name"]], column["name"])
        numeric.extend(date_parts(np.where(np.isnan(days), column["median"], days)))
        if column["indicator"]:
            indicators.append(np.isnan(days))
    categories = [category_indices(frame[c["name"]], c["categories"]) for c in plan["categorical"]]
    parts = [*numeric, *indicators, *categories]
    if not parts:
        return np.zeros((rows, 0), dtype=np.float32)
    return np.column_stack([np.asarray(p, dtype=np.float32) for p in parts])


def numbers(series: pd.Series, name: str) -> np.ndarray:
    """A column as float64 with NaN for missing; ValueError naming it if it holds words."""
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    converted = pd.to_numeric(series, errors="coerce")
    strange = converted.isna() & series.notna()
    if strange.any():
        example = series[strange].iloc[0]
        raise ValueError(
            f"input column {name!r} must hold numbers, got {example!r} (dtype {series.dtype})"
        )
    return converted.to_numpy(dtype=np.float64, na_value=np.nan)


def _refuse_infinite(values: np.ndarray, name: str) -> None:
    bad = np.isinf(values)
    if bad.any():
        raise ValueError(
            f"input column {name!r} has {int(bad.sum())} infinite value(s) (the first at "
            f"position {int(np.flatnonzero(bad)[0])}); the model was trained on finite numbers"
        )


def day_numbers(series: pd.Series, name: str) -> np.ndarray:
    """Dates (strings, datetimes, dates; naive ones read as UTC) → float64 days since 1970,
    NaN for missing; ValueError naming the column and a value that does not parse."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        parsed = pd.to_datetime(series, utc=True)
    else:
        parsed = pd.to_datetime(series, errors="coerce", utc=True, format="ISO8601")
        strange = parsed.isna() & series.notna()
        if strange.any():
            raise ValueError(
                f"column {name!r} holds dates, but {series[strange].iloc[0]!r} does not parse as "
                "one (ISO 8601: 2024-01-31 or 2024-01-31T12:00:00)"
            )
    delta = parsed - EPOCH
    return (delta.dt.total_seconds() / 86400.0).to_numpy(dtype=np.float64, na_value=np.nan)


def date_parts(days: np.ndarray) -> list[np.ndarray]:
    """DATE_PARTS of day numbers: cyclic parts as (sin, cos) so December sits next to January."""
    when = pd.DatetimeIndex(pd.to_datetime(days, unit="D"))
    parts: list[np.ndarray] = [when.year.to_numpy(np.float64)]
    for value, period in ((when.month - 1, 12), (when.day_of_week, 7), (when.day_of_year - 1, 366)):
        angle = 2 * np.pi * np.asarray(value, dtype=np.float64) / period
        parts += [np.sin(angle), np.cos(angle)]
    parts.append(days)
    return parts


def _category_key(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # 3.0 (an int column with a gap, read by pandas) is category 3
    return str(value)


def category_keys(series: pd.Series) -> pd.Series:
    """Each value as the string that names its category (missing stays missing)."""
    return series.map(_category_key, na_action="ignore")


def category_indices(series: pd.Series, categories: list[str]) -> np.ndarray:
    lookup = {key: FIRST_CATEGORY + i for i, key in enumerate(categories)}
    indices = category_keys(series).map(lookup).fillna(UNKNOWN_INDEX)
    return np.where(series.isna().to_numpy(), MISSING_INDEX, indices.to_numpy(dtype=np.float64))
