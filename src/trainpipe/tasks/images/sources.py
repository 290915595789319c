"""The `image` loaders of the registered sources (config/sources.py): each returns a
`datasets.DatasetDict` with an `image` column (datasets' Image feature, not decoded: the path or
the bytes) and a `label` column (ClassLabel), written to the cache so the decoding that follows
(data.py) is cached by datasets next to it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
from filelock import FileLock

from trainpipe.config.sources import source_of
from trainpipe.data.sources import load_hub, load_table_files
from trainpipe.errors import DataError
from trainpipe.runtime.atomic import atomic_dir
from trainpipe.tasks.images.decode import is_image_file

# split folder names → the split they hold (DIR/train|val|test/<class>/…)
SPLIT_FOLDERS = {
    "train": "train",
    "val": "val",
    "validation": "val",
    "valid": "val",
    "test": "test",
}
DIGITS_IMAGES_VERSION = "digits-images-v1"
DIGITS_IMAGE_SIDE = 32


def _features(classes: list[str]) -> datasets.Features:
    # `file`: where the picture came from, for messages (saving embeds the bytes in the index)
    return datasets.Features(
        {
            "image": datasets.Image(decode=False),
            "label": datasets.ClassLabel(names=classes),
            "file": datasets.Value("string"),
        }
    )


def scan_folder(root: Path) -> tuple[dict[str, list[tuple[str, str]]], int]:
    """{split: [(image path, class)]} of a class-per-folder tree, and the count of other files.

    DataError (naming the folder) for: no such folder, no images, one class, an empty class folder.
    """
    if not root.is_dir():
        raise DataError(f"data.path: {root} is not a folder (expected DIR/<class>/<images>)")
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subfolders and all(p.name.lower() in SPLIT_FOLDERS for p in subfolders):
        parts = {SPLIT_FOLDERS[p.name.lower()]: p for p in subfolders}
    else:
        parts = {"train": root}
    splits, ignored, empty = {}, 0, []
    for split, folder in parts.items():
        rows, skipped, without = _class_images(folder)
        splits[split], ignored = rows, ignored + skipped
        empty += without
    if not any(splits.values()):
        raise DataError(f"data.path: {root} has no images ({ignored} other file(s) ignored)")
    if empty:
        raise DataError(f"data.path: class folder {empty[0]} has no images")
    classes = {label for rows in splits.values() for _, label in rows}
    if len(classes) < 2:
        raise DataError(
            f"data.path: {root} has a single class ({', '.join(classes)}); classification needs "
            "at least 2 class folders"
        )
    return splits, ignored


def _class_images(folder: Path) -> tuple[list[tuple[str, str]], int, list[Path]]:
    """(image path, class) of each class folder's pictures, the other files, the empty folders."""
    rows, ignored, empty = [], 0, []
    for entry in sorted(folder.iterdir()):
        if not entry.is_dir():
            ignored += 1  # a file beside the class folders belongs to no class
            continue
        if entry.name.startswith("."):
            continue
        found = 0
        for dirpath, dirnames, names in os.walk(entry):
            dirnames.sort()
            for name in sorted(names):
                path = Path(dirpath, name)
                if is_image_file(path):
                    rows.append((str(path), entry.name))
                    found += 1
                else:
                    ignored += 1
        if not found:
            empty.append(entry)
    return rows, ignored, empty


def load_image_folder(data: Mapping[str, Any]) -> datasets.DatasetDict:
    """The `images` source: a class-per-folder tree, indexed once per content digest."""
    root = Path(os.path.expanduser(str(data["path"]))).resolve()
    splits, ignored = scan_folder(root)
    classes = sorted({label for rows in splits.values() for _, label in rows})
    digest = source_of(data).digest(data)
    cache_dir = Path(data["cache_dir"]).expanduser()
    target = cache_dir / "sources" / "image-index" / digest
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / f".image-index-{digest}.lock")):
        if not (target / "dataset_dict.json").is_file():
            with atomic_dir(target) as staging:
                index = datasets.DatasetDict(
                    {
                        split: datasets.Dataset.from_dict(
                            {
                                "image": [p for p, _ in rows],
                                "label": [c for _, c in rows],
                                "file": [str(Path(p).relative_to(root)) for p, _ in rows],
                            },
                            features=_features(classes),
                        )
                        for split, rows in splits.items()
                        if rows
                    }
                )
                index.save_to_disk(str(staging))
    loaded = datasets.load_from_disk(str(target))
    loaded.ignored_files = ignored  # counted in the data summary
    return loaded


def load_digits_images(data: Mapping[str, Any]) -> datasets.DatasetDict:
    """The `digits_images` source: scikit-learn's digits as 32x32 grayscale PNGs in class folders
    under the cache dir, written once; then read as any folder of pictures."""
    cache_dir = Path(data["cache_dir"]).expanduser()
    folder = cache_dir / "sources" / DIGITS_IMAGES_VERSION
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / f".{DIGITS_IMAGES_VERSION}.lock")):
        if not folder.is_dir():
            import numpy as np
            from PIL import Image
            from sklearn.datasets import load_digits

            bunch = load_digits()
            with atomic_dir(folder) as staging:
                for number, (pixels, label) in enumerate(
                    zip(bunch.images, bunch.target, strict=True)
                ):
                    image = Image.fromarray((pixels * (255 / 16)).astype(np.uint8))
                    image = image.resize((DIGITS_IMAGE_SIDE,) * 2, Image.Resampling.BILINEAR)
                    (staging / str(label)).mkdir(exist_ok=True)
                    image.save(staging / str(label) / f"{number:04d}.png")
    return load_image_folder({**data, "path": str(folder), "source": "images"})


def load_image_table(data: Mapping[str, Any]) -> datasets.DatasetDict:
    """csv / parquet / json: a table whose `data.image_column` holds paths (relative to the
    table's folder) or bytes, and whose `data.target` holds the labels."""
    raw = load_table_files(data)
    files = source_of(data).files(data)
    return _labelled(raw, data, f"{data['path']}", base=files[0].parent if files else Path("."))


def load_hub_images(data: Mapping[str, Any]) -> datasets.DatasetDict:
    """A Hub dataset with an image feature (needs the network, or the local cache)."""
    raw = load_hub(data["name"], Path(data["cache_dir"]).expanduser())
    return _labelled(raw, data, f"hub dataset {data['name']!r}", base=None)


def _labelled(
    raw: datasets.DatasetDict, data: Mapping[str, Any], where: str, base: Path | None
) -> datasets.DatasetDict:
    """A loaded table → the `image` + `label` columns every image source has."""
    image_column, target = data["image_column"], data["target"]
    first = raw[next(iter(raw))]
    for column, key in ((image_column, "data.image_column"), (target, "data.target")):
        if column not in first.column_names:
            raise DataError(
                f"{key}: column {column!r} not found in {where} "
                f"(columns: {', '.join(first.column_names)})"
            )
    for split_name, split in raw.items():
        for column, key in ((image_column, "data.image_column"), (target, "data.target")):
            missing = split.data.column(column).null_count
            if missing:
                raise DataError(
                    f"{key}: column {column!r} has {missing} missing value(s) in the "
                    f"{split_name} split of {where}"
                )
    label_feature = first.features[target]
    if isinstance(label_feature, datasets.ClassLabel):
        classes = list(label_feature.names)
    else:
        classes = sorted({str(v) for split in raw.values() for v in split.unique(target)})
    if len(classes) < 2:
        raise DataError(
            f"data.target: column {target!r} has a single class ({classes[0]!r}); "
            "classification needs at least 2"
        )
    if isinstance(first.features[image_column], datasets.Image):
        raw = raw.cast_column(image_column, datasets.Image(decode=False))
    kwargs = {
        "image_column": image_column,
        "target": target,
        "classes": classes,
        "named": not isinstance(label_feature, datasets.ClassLabel),
        "base": str(base) if base is not None else None,
    }
    return datasets.DatasetDict(
        {
            name: split.map(
                _image_rows,
                batched=True,
                fn_kwargs=kwargs,
                remove_columns=first.column_names,
                features=_features(classes),
                # the table's fingerprint says nothing of the files its paths name: without
                # theirs, a changed picture would be served from the cache of the old one
                new_fingerprint=_files_fingerprint(split, image_column, base),
                desc="index images",
            )
            for name, split in raw.items()
        }
    )


def _files_fingerprint(split: datasets.Dataset, image_column: str, base: Path | None) -> str:
    """The split's fingerprint and the size and mtime of every file its path column names (as
    `datasets` fingerprints data files); bytes inside the table are covered by the table's."""
    digest = hashlib.sha256(f"{split._fingerprint}:{image_column}".encode())
    column = split.data.column(image_column)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        for value in column.to_pylist():
            path = Path(value).expanduser()
            path = path if path.is_absolute() or base is None else base / path
            try:
                stat = path.stat()
                digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{path}:missing\n".encode())  # named when it is decoded
    return digest.hexdigest()[:16]


def _image_rows(
    batch: dict[str, list],
    image_column: str,
    target: str,
    classes: list[str],
    named: bool,
    base: str | None,
) -> dict[str, list]:
    images, files = [], []
    for value in batch[image_column]:
        files.append(value if isinstance(value, str) else "")
        if isinstance(value, str):  # a path, relative to the table's folder
            path = Path(value).expanduser()
            images.append(
                {
                    "path": str(path if path.is_absolute() or base is None else Path(base, path)),
                    "bytes": None,
                }
            )
        elif isinstance(value, dict):
            images.append({"path": value.get("path"), "bytes": value.get("bytes")})
        else:
            images.append({"path": None, "bytes": bytes(value)})
    index = {name: i for i, name in enumerate(classes)}
    labels = [index[str(v)] for v in batch[target]] if named else list(batch[target])
    return {"image": images, "label": labels, "file": files}
