"""Train/val/test splits of a prepared dataset, and their id: the same for every task."""

from __future__ import annotations

import hashlib

import datasets

from trainpipe.errors import DataError

SPLITS = ("train", "val", "test")
VALIDATION_NAMES = ("validation", "val", "valid", "dev")


def three_way_split(
    encoded: datasets.DatasetDict,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    stratify_by: str | None,
) -> datasets.DatasetDict:
    """train/val/test: the source's own splits where it has them; otherwise split
    deterministically by seed, stratified by the `stratify_by` column (class labels) if given."""
    train = encoded["train"] if "train" in encoded else encoded[next(iter(encoded))]
    test = encoded.get("test")
    val = next((encoded[n] for n in VALIDATION_NAMES if n in encoded), None)
    if test is None:
        train, test = _two_way(train, test_fraction, seed, stratify_by)
    if val is None:
        remaining = 1.0 - (0.0 if "test" in encoded else test_fraction)
        train, val = _two_way(train, val_fraction / remaining, seed, stratify_by)
    for name, split in (("train", train), ("val", val), ("test", test)):
        if len(split) == 0:
            raise DataError(
                f"data.val_fraction: the {name} split is empty; use more rows or other fractions"
            )
    # the encoding `.map` that follows writes each split's rows contiguously (cached), so loaders
    # read a plain memory-mapped column instead of going through an index mapping per batch
    return datasets.DatasetDict({"train": train, "val": val, "test": test})


def _two_way(
    ds: datasets.Dataset, fraction: float, seed: int, stratify_by: str | None
) -> tuple[datasets.Dataset, datasets.Dataset]:
    try:
        parts = ds.train_test_split(test_size=fraction, seed=seed, stratify_by_column=stratify_by)
    except ValueError:  # too few rows of some class to stratify: fall back to a plain shuffle split
        parts = ds.train_test_split(test_size=fraction, seed=seed)
    return parts["train"], parts["test"]


def split_digest(splits: datasets.DatasetDict) -> str:
    """Id of the splits as the model sees them (datasets' fingerprints chain source and transforms)."""
    blob = "|".join(f"{name}:{len(splits[name])}:{splits[name]._fingerprint}" for name in SPLITS)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
