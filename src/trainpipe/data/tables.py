"""Turn raw rows into model-ready splits: checked columns, encoded labels, deterministic splits.

The encoding runs through `Dataset.map` on the on-disk source, so `datasets` caches it next to the
source's Arrow files; a rerun with the same data and config loads the cache instead of recomputing.
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

from trainpipe.data.sources import load_source
from trainpipe.errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
VALIDATION_NAMES = ("validation", "val", "valid", "dev")


@dataclass
class PreparedData:
    """Train/val/test splits with two columns, `features` (float32 vector) and `label` (class index)."""

    splits: datasets.DatasetDict
    feature_names: list[str]
    class_names: list[str]
    input_shape: tuple[int, ...]
    digest: str
    source: str
    feature_mean: np.ndarray = field(repr=False)
    feature_std: np.ndarray = field(repr=False)
    cache_reused: bool = False
    seconds: float = 0.0

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def prepare(conf: dict[str, Any]) -> PreparedData:
    """Load, check, encode and split the data of a resolved `data` config section."""
    started = time.perf_counter()
    raw = load_source(conf)
    first = raw[next(iter(raw))]
    describe = conf.get("path") or conf.get("name") or conf["source"]
    feature_names = _feature_columns(first, conf, describe)
    class_values = _check_rows(raw, feature_names, conf["target"], describe)
    input_shape = _input_shape(conf.get("image_shape"), len(feature_names))
    cache_before = _cache_files(raw)
    encoded = raw.map(
        encode_rows,
        batched=True,
        batch_size=2048,
        fn_kwargs={
            "feature_names": feature_names,
            "target": conf["target"],
            "class_values": class_values,
        },
        remove_columns=first.column_names,
        features=datasets.Features(
            {
                "features": datasets.List(datasets.Value("float32"), length=len(feature_names)),
                "label": datasets.ClassLabel(names=[str(v) for v in class_values]),
            }
        ),
        desc="encode rows",
    )
    splits = _split(encoded, conf["val_fraction"], conf["test_fraction"], conf["seed"])
    cache_reused = bool(cache_before) and _cache_files(raw) == cache_before
    # `[:]` reads the column as one batch; indexing the column directly walks it row by row
    train_x = np.asarray(splits["train"].with_format("numpy")[:]["features"], dtype=np.float64)
    std = train_x.std(axis=0)
    prepared = PreparedData(
        splits=splits,
        feature_names=feature_names,
        class_names=[str(v) for v in class_values],
        input_shape=input_shape,
        digest=_digest(splits),
        source=str(describe),
        feature_mean=train_x.mean(axis=0).astype(np.float32),
        # constant columns (e.g. always-blank pixels) are left unscaled instead of divided by 0
        feature_std=np.where(std > 1e-8, std, 1.0).astype(np.float32),
        cache_reused=cache_reused,
        seconds=time.perf_counter() - started,
    )
    log.info(
        "data %s: %s rows (train/val/test), %d features, %d classes, digest %s, cache %s, %.2fs",
        prepared.source,
        "/".join(str(len(splits[s])) for s in SPLITS),
        prepared.num_features,
        prepared.num_classes,
        prepared.digest,
        "reused" if cache_reused else "built",
        prepared.seconds,
    )
    return prepared


def encode_rows(
    batch: dict[str, list], feature_names: list[str], target: str, class_values: list[Any]
) -> dict[str, Any]:
    """Batched `.map` function: stack feature columns into one float32 vector, index the labels."""
    index = {value: i for i, value in enumerate(class_values)}
    stacked = np.stack(
        [np.asarray(batch[name], dtype=np.float32) for name in feature_names], axis=1
    )
    return {"features": stacked, "label": [index[v] for v in batch[target]]}


def _feature_columns(ds: datasets.Dataset, conf: dict[str, Any], where: str) -> list[str]:
    columns = ds.column_names
    target = conf["target"]
    if target not in columns:
        raise DataError(
            f"data.target: column {target!r} not found in {where} (columns: {', '.join(columns)})"
        )
    wanted = conf.get("features") or [c for c in columns if c != target]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise DataError(
            f"data.features: column {missing[0]!r} not found in {where} (columns: {', '.join(columns)})"
        )
    if not wanted:
        raise DataError(f"data.features: {where} has no column besides the target {target!r}")
    schema = ds.data.schema
    for name in wanted:
        kind = schema.field(name).type
        if not (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
        ):
            raise DataError(
                f"data.features: column {name!r} in {where} is not numeric ({kind}); list numeric columns in data.features"
            )
    return list(wanted)


def _check_rows(
    raw: datasets.DatasetDict, feature_names: list[str], target: str, where: str
) -> list[Any]:
    """Reject empty data, missing values and single-class targets; return the sorted class values."""
    if sum(len(split) for split in raw.values()) == 0:
        raise DataError(f"data.path: {where} has no rows")
    values: set[Any] = set()
    for split_name, split in raw.items():
        table = split.data
        for name in [*feature_names, target]:
            nulls = table.column(name).null_count
            if nulls:
                raise DataError(
                    f"data.features: column {name!r} has {nulls} missing value(s) in the {split_name} split of {where}"
                )
        values.update(split.unique(target))
    if len(values) < 2:
        raise DataError(
            f"data.target: column {target!r} has a single class ({next(iter(values))!r}); classification needs at least 2"
        )
    return sorted(values, key=lambda v: (str(type(v)), v))


def _input_shape(image_shape: list[int] | None, num_features: int) -> tuple[int, ...]:
    if image_shape is None:
        return (num_features,)
    if math.prod(image_shape) != num_features:
        raise DataError(
            f"data.image_shape: {list(image_shape)} holds {math.prod(image_shape)} values but the data has {num_features} features"
        )
    return tuple(image_shape)


def _split(
    encoded: datasets.DatasetDict, val_fraction: float, test_fraction: float, seed: int
) -> datasets.DatasetDict:
    """Use the source's own splits where it has them; otherwise split deterministically by seed."""
    train = encoded["train"] if "train" in encoded else encoded[next(iter(encoded))]
    test = encoded.get("test")
    val = next((encoded[n] for n in VALIDATION_NAMES if n in encoded), None)
    if test is None:
        train, test = _two_way(train, test_fraction, seed)
    if val is None:
        remaining = 1.0 - (0.0 if "test" in encoded else test_fraction)
        train, val = _two_way(train, val_fraction / remaining, seed)
    for name, split in (("train", train), ("val", val), ("test", test)):
        if len(split) == 0:
            raise DataError(
                f"data.val_fraction: the {name} split is empty; use more rows or other fractions"
            )
    # write each split's rows contiguously once (cached like every other step), so loaders read
    # a plain memory-mapped column instead of going through an index mapping per batch
    return datasets.DatasetDict({"train": train, "val": val, "test": test}).flatten_indices()


def _two_way(
    ds: datasets.Dataset, fraction: float, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset]:
    try:
        parts = ds.train_test_split(test_size=fraction, seed=seed, stratify_by_column="label")
    except ValueError:  # too few rows of some class to stratify: fall back to a plain shuffle split
        parts = ds.train_test_split(test_size=fraction, seed=seed)
    return parts["train"], parts["test"]


def _cache_files(raw: datasets.DatasetDict) -> set[str]:
    folders = {Path(f["filename"]).parent for split in raw.values() for f in split.cache_files}
    return {str(p) for folder in folders for p in folder.glob("cache-*.arrow")}


def _digest(splits: datasets.DatasetDict) -> str:
    """Content-derived id of the prepared splits (datasets' fingerprints chain source files and every transform)."""
    blob = "|".join(f"{name}:{len(splits[name])}:{splits[name]._fingerprint}" for name in SPLITS)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
