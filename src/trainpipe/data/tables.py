"""Tables → model-ready splits: checked columns, an encoded target, deterministic splits.

Task-neutral: the target is encoded as class indices (`classes`) or as float values (`values`),
whichever the task asks for. The encoding runs through `Dataset.map` on the on-disk source, so
`datasets` caches it next to the source's Arrow files and a rerun with the same data and config
loads the cache instead of recomputing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from trainpipe.data import columns, table_plan
from trainpipe.data.sources import describe_source, load_source, source_digest
from trainpipe.data.splits import SPLITS, split_digest, three_way_split
from trainpipe.errors import DataError
from trainpipe.runtime.atomic import atomic_write_text

log = logging.getLogger(__name__)

TARGET_KINDS = ("classes", "values")
# a float target of whole numbers with more distinct values than this is a quantity, not labels
# (scikit-learn's diabetes: 214 distinct whole numbers; 0.0/1.0 labels saved from pandas: 2)
MAX_FLOAT_CLASSES = 20
# the encoded target while the raw columns are still there (a feature may be called "target")
TARGET_COLUMN = "__target__"
# bump when data/columns.py learns plans differently: cached plans of older code are not reused
PLAN_VERSION = 1


@dataclass
class PreparedTable:
    """Train/val/test splits with two columns: `features` (float32 vector: the numeric inputs,
    then one category index per categorical column; data/columns.py) and `target` (class index
    for `classes`, float32 for `values`). `feature_names` are the input columns as read."""

    splits: datasets.DatasetDict
    feature_names: list[str]
    input_shape: tuple[int, ...]
    target_name: str
    target_kind: str  # classes | values
    class_values: (
        list[Any] | None
    )  # classes: the sorted distinct target values, typed as in the data
    digest: str  # content of the source
    split_digest: str  # the encoded splits
    source: str
    feature_mean: np.ndarray = field(repr=False)
    feature_std: np.ndarray = field(repr=False)
    target_mean: float = (
        0.0  # values: train-split mean/std (the model predicts standardised values)
    )
    target_std: float = 1.0
    cache_reused: bool = False
    seconds: float = 0.0
    # the column plan learned on the training split (data/columns.py), JSON
    plan: dict[str, Any] = field(default_factory=columns.empty_plan)
    class_weights: list[float] | None = None  # data.class_weights=auto: per class, in the loss
    # the splits' rows as read (the input columns and the encoded target): the input example,
    # and baselines that train on the very same split (benchmarks/tables.py)
    raw_splits: datasets.DatasetDict | None = field(default=None, repr=False)

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    def split_sizes(self) -> dict[str, int]:
        return {name: len(self.splits[name]) for name in SPLITS}

    def example_frame(self, count: int = 5) -> pd.DataFrame:
        """A few test rows as read (the input columns): the registered model's input example."""
        assert self.raw_splits is not None
        test = self.raw_splits["test"]
        rows = test.select(range(min(count, len(test))))
        return rows.select_columns(self.feature_names).to_pandas()


def target_kind(conf: dict[str, Any]) -> str:
    """`values` for a float target with non-integer values or more than MAX_FLOAT_CLASSES
    distinct values; `classes` for integers, strings, booleans and a few whole-number floats."""
    raw = load_source(conf)
    first = raw[next(iter(raw))]
    _require_column(first, conf["target"], "data.target", describe_source(conf))
    column = pa.chunked_array([split.data.column(conf["target"]) for split in raw.values()])
    if not pa.types.is_floating(column.type):
        return "classes"
    values = column.drop_null()
    finite = pc.filter(values, pc.is_finite(values))
    fractional = pc.any(pc.not_equal(finite, pc.floor(finite))).as_py()
    many = pc.count_distinct(finite).as_py() > MAX_FLOAT_CLASSES
    return "values" if fractional or many else "classes"


def prepare_table(conf: dict[str, Any], kind: str) -> PreparedTable:
    """Load, check, encode and split the table of a resolved `data` config section.

    Two cached `.map`s: the target is encoded first (the split is stratified on it), then, once
    the column plan is learned on the training split (data/columns.py), every split's rows are
    encoded into numeric inputs + category indices with that plan.
    """
    if kind not in TARGET_KINDS:
        raise ValueError(f"target kind must be one of {TARGET_KINDS}, got {kind!r}")
    started = time.perf_counter()
    raw = load_source(conf)
    first = raw[next(iter(raw))]
    describe = describe_source(conf)
    target = conf["target"]
    _require_column(first, target, "data.target", describe)
    table_plan.check_declared(first, conf, describe)
    candidates = table_plan.candidate_columns(first, conf)
    if not candidates:
        raise DataError(f"data.features: {describe} has no column besides the target {target!r}")
    cache_before = _cache_files(raw)
    raw = table_plan.drop_missing_target(raw, target, conf, describe)
    if sum(len(split) for split in raw.values()) == 0:
        raise DataError(f"data.path: {describe} has no rows")
    table_plan.check_finite(raw, candidates, describe)
    _check_target(raw, target, describe)
    class_values = _class_values(raw, target) if kind == "classes" else None
    targeted = raw.map(
        encode_target,
        batched=True,
        batch_size=2048,
        fn_kwargs={"target": target, "class_values": class_values},
        remove_columns=[target],
        features=datasets.Features(
            {
                **{c: first.features[c] for c in first.column_names if c != target},
                TARGET_COLUMN: (
                    datasets.ClassLabel(names=[str(v) for v in class_values])
                    if class_values is not None
                    else datasets.Value("float32")
                ),
            }
        ),
        desc="encode the target",
    )
    stratify = TARGET_COLUMN if kind == "classes" else None
    raw_splits = three_way_split(
        targeted, conf["val_fraction"], conf["test_fraction"], conf["seed"], stratify
    )
    plan = _learned_plan(raw_splits["train"], candidates, conf)
    kinds = {c["name"] for kind in ("numeric", "dates", "categorical") for c in plan[kind]}
    feature_names = [c for c in candidates if c in kinds]
    numeric_width = len(columns.numeric_names(plan))
    width = numeric_width + len(plan["categorical"])
    try:
        splits = datasets.DatasetDict(
            {
                name: split.with_format("arrow").map(
                    encode_rows,
                    batched=True,
                    batch_size=2048,
                    fn_kwargs={"plan": plan, "feature_names": feature_names},
                    remove_columns=split.column_names,
                    features=datasets.Features(
                        {
                            "features": datasets.List(datasets.Value("float32"), length=width),
                            "target": split.features[TARGET_COLUMN],
                        }
                    ),
                    desc=f"encode the {name} rows",
                )
                for name, split in raw_splits.items()
            }
        ).with_format(None)
    except (
        ValueError
    ) as err:  # a value the plan cannot read in val/test (a date that does not parse)
        raise DataError(f"data.features: {err}") from None
    input_shape = _input_shape(conf.get("image_shape"), numeric_width, plan)
    train = splits["train"].with_format("numpy")[:]  # `[:]` reads whole columns in one batch
    train_x = np.asarray(train["features"], dtype=np.float64)[:, :numeric_width]
    train_y = np.asarray(train["target"], dtype=np.float64)
    std = train_x.std(axis=0)
    prepared = PreparedTable(
        splits=splits,
        feature_names=feature_names,
        input_shape=input_shape,
        target_name=target,
        target_kind=kind,
        class_values=class_values,
        digest=source_digest(conf, raw),
        split_digest=split_digest(splits),
        source=describe,
        feature_mean=train_x.mean(axis=0).astype(np.float32),
        # constant columns (e.g. always-blank pixels) are left unscaled instead of divided by 0
        feature_std=np.where(std > 1e-8, std, 1.0).astype(np.float32),
        target_mean=float(train_y.mean()) if kind == "values" else 0.0,
        target_std=float(train_y.std()) if kind == "values" and train_y.std() > 1e-8 else 1.0,
        cache_reused=bool(cache_before) and _cache_files(raw) == cache_before,
        seconds=time.perf_counter() - started,
        plan=plan,
        class_weights=_class_weights(train_y, class_values, conf.get("class_weights", "none")),
        raw_splits=raw_splits,
    )
    log.info(
        "data %s: %s rows (train/val/test), %d features, target %r (%s), digest %s, cache %s, %.2fs",
        prepared.source,
        "/".join(str(n) for n in prepared.split_sizes().values()),
        prepared.num_features,
        target,
        f"{len(class_values)} classes" if class_values is not None else "values",
        prepared.digest,
        "reused" if prepared.cache_reused else "built",
        prepared.seconds,
    )
    log.info("columns: %s", columns.describe_plan(plan))
    return prepared


def _learned_plan(
    train: datasets.Dataset, candidates: list[str], conf: dict[str, Any]
) -> dict[str, Any]:
    """The column plan of the training split, kept as JSON in the cache by what decides it (the
    split's fingerprint, the columns and their declared kinds): a rerun skips reading the
    training rows into pandas and learning again (most of a cached preparation's time)."""
    key = json.dumps(
        [PLAN_VERSION, train._fingerprint, candidates, conf.get("categorical"), conf.get("numeric")]
    )
    path = Path(conf["cache_dir"]).expanduser() / "plans" / f"{_sha(key)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    train_rows = train.select_columns(candidates).to_pandas()
    kinds, excluded = table_plan.column_kinds(train_rows, candidates, conf)
    plan = columns.learn_plan(train_rows, kinds, excluded)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(plan))
    return plan


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_target(
    batch: dict[str, list], target: str, class_values: list[Any] | None
) -> dict[str, Any]:
    """Batched `.map` function: the target as a class index or a float32 value."""
    if class_values is None:
        return {TARGET_COLUMN: np.asarray(batch[target], dtype=np.float32)}
    index = {value: i for i, value in enumerate(class_values)}
    return {TARGET_COLUMN: [index[_class_key(v)] for v in batch[target]]}


def encode_rows(batch: pa.Table, plan: dict[str, Any], feature_names: list[str]) -> dict[str, Any]:
    """Batched `.map` function (Arrow batches): the plan's float32 vector of each row."""
    frame = batch.select(feature_names).to_pandas()
    return {
        "features": columns.encode_frame(frame, plan),
        "target": batch.column(TARGET_COLUMN).to_numpy(),
    }


def _class_key(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _class_weights(
    train_y: np.ndarray, class_values: list[Any] | None, mode: str
) -> list[float] | None:
    """`data.class_weights=auto`: n / (classes · count) per class (scikit-learn's "balanced"),
    so every class weighs the same in the loss; a class absent from training gets weight 1."""
    if class_values is None or mode != "auto":
        return None
    counts = np.bincount(train_y.astype(np.int64), minlength=len(class_values))
    weights = np.where(counts > 0, len(train_y) / (len(class_values) * np.maximum(counts, 1)), 1.0)
    return [float(w) for w in weights]


def _require_column(ds: datasets.Dataset, column: str, key: str, where: str) -> None:
    if column not in ds.column_names:
        raise DataError(
            f"{key}: column {column!r} not found in {where} (columns: {', '.join(ds.column_names)})"
        )


def _check_target(raw: datasets.DatasetDict, target: str, where: str) -> None:
    """A target must be a finite value (rows without one were dropped or refused before)."""
    for split_name, split in raw.items():
        column = split.data.column(target)
        if pa.types.is_floating(column.type):
            bad = len(column) - pc.sum(pc.is_finite(column)).as_py()
            if bad:
                raise DataError(
                    f"data.target: column {target!r} has {bad} non-finite value(s) (inf/nan) "
                    f"in the {split_name} split of {where}"
                )


def _class_values(raw: datasets.DatasetDict, target: str) -> list[Any]:
    values: set[Any] = set()
    for split in raw.values():
        values.update(split.unique(target))
    if len(values) < 2:
        raise DataError(
            f"data.target: column {target!r} has a single class ({next(iter(values))!r}); "
            "classification needs at least 2"
        )
    # numbers in numeric order (2 before 10), strings alphabetically; floats like 1.0 are ints
    typed = [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]
    return sorted(typed, key=lambda v: (str(type(v)), v))


def _input_shape(
    image_shape: list[int] | None, num_features: int, plan: dict[str, Any]
) -> tuple[int, ...]:
    """The net's input: the numeric inputs and the categorical columns' embeddings side by side,
    or the numbers reshaped to `data.image_shape` (all-numeric tables only)."""
    embedded = sum(width for _, width in columns.embedding_sizes(plan))
    if image_shape is None:
        return (num_features + embedded,)
    if plan["categorical"] or plan["dates"]:
        raise DataError(
            "data.image_shape: reshapes numeric columns only; the table has categorical or date "
            "columns (" + ", ".join(c["name"] for c in plan["categorical"] + plan["dates"]) + ")"
        )
    if math.prod(image_shape) != num_features:
        raise DataError(
            f"data.image_shape: {list(image_shape)} holds {math.prod(image_shape)} values "
            f"but the data has {num_features} features"
        )
    return tuple(image_shape)


def _cache_files(raw: datasets.DatasetDict) -> set[str]:
    folders = {Path(f["filename"]).parent for split in raw.values() for f in split.cache_files}
    return {str(p) for folder in folders for p in folder.glob("cache-*.arrow")}
