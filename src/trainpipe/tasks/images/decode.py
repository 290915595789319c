"""One picture → the square uint8 RGB array the model sees: the same code prepares the training
cache and a serving request, so a served image is preprocessed exactly as the training ones.

PIL and numpy only (no torch): the data layer and the predictor share it.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

# what a class folder's pictures may be; other files are ignored and counted
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm"}
)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def open_image(value: Any) -> Image.Image:
    """A PIL image from bytes, a path, or `datasets`' {"bytes", "path"}; fully decoded here, so a
    truncated or corrupt file fails now (OSError / PIL.UnidentifiedImageError), not later."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, Image.Image):
        image = value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        image = Image.open(io.BytesIO(bytes(value)))
    else:
        image = Image.open(os.fspath(value))
    image.load()
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """EXIF orientation applied; grayscale, palette, CMYK → RGB; transparency over white (a
    transparent pixel has no colour of its own: black, PIL's default, would be a guess too)."""
    image = ImageOps.exif_transpose(image)
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def fit_square(image: Image.Image, size: int) -> np.ndarray:
    """Shorter side resized to `size`, then center-cropped: uint8 [size, size, 3]."""
    image = to_rgb(image)
    width, height = image.size
    scale = size / min(width, height)
    resized = (max(size, round(width * scale)), max(size, round(height * scale)))
    if resized != image.size:
        image = image.resize(resized, Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (resized[0] - size) // 2, (resized[1] - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def array_image(array: np.ndarray) -> Image.Image:
    """A uint8 HWC (or HW grayscale) array as a PIL image; ValueError for anything else."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8 (0-255), got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)):
        return Image.fromarray(array)
    raise ValueError(f"an image array must be HxWx3 (or HxW, HxWx4) uint8, got shape {array.shape}")


def from_text(text: str) -> Any:
    """A string cell: a path to an existing file, else base64 bytes (what JSON carries)."""
    if len(text) < 4096 and Path(text).expanduser().is_file():
        return str(Path(text).expanduser())
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"image {text[:60]!r} is neither an existing file nor base64-encoded bytes"
        ) from None
