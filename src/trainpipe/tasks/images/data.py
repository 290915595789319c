"""Image data → model-ready splits: every picture decoded, made RGB and resized once (a cached
`datasets.map`), split like tables, with per-channel statistics of the training split.

A split has the two columns the project's loader reads (data/loader.py): `features`, the
picture as uint8 [size·size·3] (HWC order), and `target`, the class index. Augmentation and the
conversion to floats happen per batch in the loader (transforms.py), not here.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc

from trainpipe.config.sources import source_of
from trainpipe.data.sources import describe_source, source_digest
from trainpipe.data.splits import SPLITS, split_digest, three_way_split
from trainpipe.errors import DataError
from trainpipe.tasks.images.decode import fit_square, open_image

log = logging.getLogger(__name__)

STATS_ROWS = 4096  # images per step of the mean/std pass (bounded memory on large data)


@dataclass
class PreparedImages:
    splits: datasets.DatasetDict
    classes: list[str]
    image_size: int
    mean: list[float]  # per RGB channel, of the training split's pixels scaled to [0, 1]
    std: list[float]
    digest: str
    split_digest: str
    source: str
    image_column: str
    target_name: str
    skipped_images: int = 0  # undecodable pictures left out (data.skip_bad_images)
    ignored_files: int = 0  # files of a folder that are not pictures
    seconds: float = 0.0
    raw: Any = field(default=None, repr=False)

    def split_sizes(self) -> dict[str, int]:
        return {name: len(self.splits[name]) for name in SPLITS}

    def example_images(self, count: int = 3) -> np.ndarray:
        """A few test pictures as uint8 [count, size, size, 3]: the registered model's example."""
        rows = self.splits["test"].with_format("numpy")[:count]["features"]
        return np.asarray(rows, dtype=np.uint8).reshape(-1, self.image_size, self.image_size, 3)


def decode_rows(batch: dict[str, list], size: int) -> dict[str, list]:
    """Batched `.map` function: each picture → uint8 [size·size·3]; a picture that cannot be
    decoded gets zeros and its reason in `bad` (the caller stops or leaves it out). `sha256`: of
    the picture's bytes, so the data's digest covers the pictures a table points to."""
    pixels, bad, digests = [], [], []
    blank = np.zeros(size * size * 3, dtype=np.uint8)
    for value, file in zip(batch["image"], batch["file"], strict=True):
        try:
            raw = value.get("bytes") or Path(value["path"]).read_bytes()
            pixels.append(fit_square(open_image(raw), size).reshape(-1))
            bad.append("")
            digests.append(hashlib.sha256(raw).hexdigest())
        except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for corrupt files
            name = file or value.get("path") or "an image given as bytes"
            pixels.append(blank)
            bad.append(f"{name}: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
            digests.append("")  # left out (or the job stops): nothing of it is trained on
    return {"features": pixels, "target": batch["label"], "bad": bad, "sha256": digests}


def prepare_images(data: dict[str, Any]) -> PreparedImages:
    """Load, decode, check and split the pictures of a resolved `data` config section."""
    started = time.perf_counter()
    raw = source_of(data).load(data, "image")
    first = raw[next(iter(raw))]
    classes = list(first.features["label"].names)
    size = int(data["image_size"])
    decoded = raw.map(
        decode_rows,
        batched=True,
        batch_size=256,
        num_proc=data.get("num_proc") if data.get("num_proc", 1) > 1 else None,
        fn_kwargs={"size": size},
        remove_columns=first.column_names,
        features=datasets.Features(
            {
                "features": datasets.List(datasets.Value("uint8"), length=size * size * 3),
                "target": datasets.ClassLabel(names=classes),
                "bad": datasets.Value("string"),
                "sha256": datasets.Value("string"),
            }
        ),
        desc="decode images",
    )
    skipped = _check_decoded(decoded, bool(data["skip_bad_images"]))
    if skipped:
        decoded = decoded.filter(
            lambda reasons: [not r for r in reasons],
            input_columns="bad",
            batched=True,
            desc="leave out bad images",
        )
    digest = _content_digest(source_digest(data, raw), decoded)
    decoded = decoded.remove_columns(["bad", "sha256"])
    splits = three_way_split(
        decoded, data["val_fraction"], data["test_fraction"], data["seed"], "target"
    )
    mean, std = channel_stats(splits["train"], size)
    prepared = PreparedImages(
        splits=splits,
        classes=classes,
        image_size=size,
        mean=mean,
        std=std,
        digest=digest,
        split_digest=split_digest(splits),
        source=describe_source(data),
        image_column=data["image_column"],
        target_name=data["target"],
        skipped_images=skipped,
        ignored_files=getattr(raw, "ignored_files", 0),
        seconds=time.perf_counter() - started,
    )
    log.info(
        "data %s: %s images (train/val/test), %d classes, %dx%d RGB, digest %s%s%s, %.2fs",
        prepared.source,
        "/".join(str(n) for n in prepared.split_sizes().values()),
        len(classes),
        size,
        size,
        prepared.digest,
        f" ({skipped} undecodable image(s) skipped)" if skipped else "",
        f" ({prepared.ignored_files} non-image file(s) ignored)" if prepared.ignored_files else "",
        prepared.seconds,
    )
    return prepared


def _check_decoded(decoded: datasets.DatasetDict, skip: bool) -> int:
    """How many pictures failed to decode; DataError naming the first unless they are skipped."""
    count = 0
    for split in decoded.values():
        column = split.data.column("bad")
        failed = pc.filter(column, pc.not_equal(column, ""))
        if len(failed) and not skip:
            raise DataError(
                f"data.path: cannot decode image {failed[0].as_py()} "
                "(fix or remove it, or set data.skip_bad_images=true to leave such images out)"
            )
        count += len(failed)
    return count


def _content_digest(source: str, decoded: datasets.DatasetDict) -> str:
    """The source's digest and every picture's bytes (a table's digest alone covers the table
    file, not the pictures its paths point to)."""
    blob = hashlib.sha256(source.encode())
    for name in sorted(decoded):
        for chunk in decoded[name].data.column("sha256").chunks:
            blob.update("".join(chunk.to_pylist()).encode())
    return blob.hexdigest()[:16]


def channel_stats(split: datasets.Dataset, size: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of a split's pixels in [0, 1] (float64 sums, in chunks)."""
    total = np.zeros(3)
    squares = np.zeros(3)
    count = 0
    table = split.with_format("numpy")
    for start in range(0, len(split), STATS_ROWS):
        rows = np.asarray(table[start : start + STATS_ROWS]["features"], dtype=np.float64)
        pixels = rows.reshape(-1, 3) / 255.0
        total += pixels.sum(axis=0)
        squares += (pixels**2).sum(axis=0)
        count += len(pixels)
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean**2, 0.0))
    # a constant channel (a blank dataset) is left unscaled instead of divided by 0
    return mean.tolist(), np.where(std > 1e-6, std, 1.0).tolist()
