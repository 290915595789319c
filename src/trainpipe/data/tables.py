"""Tables → model-ready splits: checked columns, an encoded target, deterministic splits.

Task-neutral: the target is encoded as class indices (`classes`) or as float values (`values`),
whichever the task asks for. The encoding runs through `Dataset.map` on the on-disk source, so
`datasets` caches it next to the source's Arrow files and a rerun with the same data and config
loads the cache instead of recomputing.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trainpipe.data.sources import describe_source, load_source, source_digest
from trainpipe.errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
VALIDATION_NAMES = ("validation", "val", "valid", "dev")
TARGET_KINDS = ("classes", "values")
# a float target of whole numbers with more distinct values than this is a quantity, not labels
# (scikit-learn's diabetes: 214 distinct whole numbers; 0.0/1.0 labels saved from pandas: 2)
MAX_FLOAT_CLASSES = 20


@dataclass
class PreparedTable:
    """Train/val/test splits with two columns: `features` (float32 vector) and `target`
    (class index for `classes`, float32 for `values`)."""

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

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    def split_sizes(self) -> dict[str, int]:
        return {name: len(self.splits[name]) for name in SPLITS}

    def example_rows(self, count: int = 5) -> np.ndarray:
        """A few raw test rows (float64 [count, features]): the registered model's input example."""
        return np.asarray(
            self.splits["test"].with_format("numpy")[:count]["features"], dtype=np.float64
        )


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
    """Load, check, encode and split the table of a resolved `data` config section."""
    if kind not in TARGET_KINDS:
        raise ValueError(f"target kind must be one of {TARGET_KINDS}, got {kind!r}")
    started = time.perf_counter()
    raw = load_source(conf)
    first = raw[next(iter(raw))]
    describe = describe_source(conf)
    feature_names = _feature_columns(first, conf, describe)
    target = conf["target"]
    _check_rows(raw, feature_names, target, describe)
    class_values = _class_values(raw, target) if kind == "classes" else None
    input_shape = _input_shape(conf.get("image_shape"), len(feature_names))
    cache_before = _cache_files(raw)
    target_type = (
        datasets.ClassLabel(names=[str(v) for v in class_values])
        if class_values is not None
        else datasets.Value("float32")
    )
    encoded = raw.map(
        encode_rows,
        batched=True,
        batch_size=2048,
        fn_kwargs={"feature_names": feature_names, "target": target, "class_values": class_values},
        remove_columns=first.column_names,
        features=datasets.Features(
            {
                "features": datasets.List(datasets.Value("float32"), length=len(feature_names)),
                "target": target_type,
            }
        ),
        desc="encode rows",
    )
    splits = _split(encoded, conf["val_fraction"], conf["test_fraction"], conf["seed"], kind)
    train = splits["train"].with_format("numpy")[:]  # `[:]` reads whole columns in one batch
    train_x = np.asarray(train["features"], dtype=np.float64)
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
        split_digest=_split_digest(splits),
        source=describe,
        feature_mean=train_x.mean(axis=0).astype(np.float32),
        # constant columns (e.g. always-blank pixels) are left unscaled instead of divided by 0
        feature_std=np.where(std > 1e-8, std, 1.0).astype(np.float32),
        target_mean=float(train_y.mean()) if kind == "values" else 0.0,
        target_std=float(train_y.std()) if kind == "values" and train_y.std() > 1e-8 else 1.0,
        cache_reused=bool(cache_before) and _cache_files(raw) == cache_before,
        seconds=time.perf_counter() - started,
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
    return prepared


def encode_rows(
    batch: dict[str, list], feature_names: list[str], target: str, class_values: list[Any] | None
) -> dict[str, Any]:
    """Batched `.map` function: stack feature columns into one float32 vector, encode the target."""
    stacked = np.stack(
        [np.asarray(batch[name], dtype=np.float32) for name in feature_names], axis=1
    )
    if class_values is None:
        return {"features": stacked, "target": np.asarray(batch[target], dtype=np.float32)}
    index = {value: i for i, value in enumerate(class_values)}
    return {"features": stacked, "target": [index[v] for v in batch[target]]}


def _require_column(ds: datasets.Dataset, column: str, key: str, where: str) -> None:
    if column not in ds.column_names:
        raise DataError(
            f"{key}: column {column!r} not found in {where} (columns: {', '.join(ds.column_names)})"
        )


def _feature_columns(ds: datasets.Dataset, conf: dict[str, Any], where: str) -> list[str]:
    columns = ds.column_names
    target = conf["target"]
    _require_column(ds, target, "data.target", where)
    wanted = conf.get("features") or [c for c in columns if c != target]
    for column in wanted:
        _require_column(ds, column, "data.features", where)
    if not wanted:
        raise DataError(f"data.features: {where} has no column besides the target {target!r}")
    schema = ds.data.schema
    for name in wanted:
        kind = schema.field(name).type
        if not (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
        ):
            raise DataError(
                f"data.features: column {name!r} in {where} is not numeric ({kind}); "
                "list numeric columns in data.features"
            )
    return list(wanted)


def _check_rows(
    raw: datasets.DatasetDict, feature_names: list[str], target: str, where: str
) -> None:
    """Reject empty data, missing values and non-finite numbers, naming the column."""
    if sum(len(split) for split in raw.values()) == 0:
        raise DataError(f"data.path: {where} has no rows")
    for split_name, split in raw.items():
        for name, key in [*((f, "data.features") for f in feature_names), (target, "data.target")]:
            column = split.data.column(name)
            if column.null_count:
                raise DataError(
                    f"{key}: column {name!r} has {column.null_count} missing value(s) "
                    f"in the {split_name} split of {where}"
                )
            if pa.types.is_floating(column.type):
                bad = len(column) - pc.sum(pc.is_finite(column)).as_py()
                if bad:
                    raise DataError(
                        f"{key}: column {name!r} has {bad} non-finite value(s) (inf/nan) "
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


def _input_shape(image_shape: list[int] | None, num_features: int) -> tuple[int, ...]:
    if image_shape is None:
        return (num_features,)
    if math.prod(image_shape) != num_features:
        raise DataError(
            f"data.image_shape: {list(image_shape)} holds {math.prod(image_shape)} values "
            f"but the data has {num_features} features"
        )
    return tuple(image_shape)


def _split(
    encoded: datasets.DatasetDict, val_fraction: float, test_fraction: float, seed: int, kind: str
) -> datasets.DatasetDict:
    """Use the source's own splits where it has them; otherwise split deterministically by seed."""
    train = encoded["train"] if "train" in encoded else encoded[next(iter(encoded))]
    test = encoded.get("test")
    val = next((encoded[n] for n in VALIDATION_NAMES if n in encoded), None)
    stratify = kind == "classes"
    if test is None:
        train, test = _two_way(train, test_fraction, seed, stratify)
    if val is None:
        remaining = 1.0 - (0.0 if "test" in encoded else test_fraction)
        train, val = _two_way(train, val_fraction / remaining, seed, stratify)
    for name, split in (("train", train), ("val", val), ("test", test)):
        if len(split) == 0:
            raise DataError(
                f"data.val_fraction: the {name} split is empty; use more rows or other fractions"
            )
    # write each split's rows contiguously once (cached like every other step), so loaders read
    # a plain memory-mapped column instead of going through an index mapping per batch
    return datasets.DatasetDict({"train": train, "val": val, "test": test}).flatten_indices()


def _two_way(
    ds: datasets.Dataset, fraction: float, seed: int, stratify: bool
) -> tuple[datasets.Dataset, datasets.Dataset]:
    try:
        parts = ds.train_test_split(
            test_size=fraction, seed=seed, stratify_by_column="target" if stratify else None
        )
    except ValueError:  # too few rows of some class to stratify: fall back to a plain shuffle split
        parts = ds.train_test_split(test_size=fraction, seed=seed)
    return parts["train"], parts["test"]


def _cache_files(raw: datasets.DatasetDict) -> set[str]:
    folders = {Path(f["filename"]).parent for split in raw.values() for f in split.cache_files}
    return {str(p) for folder in folders for p in folder.glob("cache-*.arrow")}


def _split_digest(splits: datasets.DatasetDict) -> str:
    """Id of the splits as the model sees them (datasets' fingerprints chain source and transforms)."""
    blob = "|".join(f"{name}:{len(splits[name])}:{splits[name]._fingerprint}" for name in SPLITS)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
