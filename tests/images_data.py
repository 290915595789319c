"""Small generated picture folders for the image tests: learnable (each class its own colour),
tiny (16x16), in the formats a user's folder holds (PNG, JPEG, grayscale)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (40, 50, 210)}


def picture(colour: tuple[int, int, int], seed: int, side: int = 16) -> np.ndarray:
    """uint8 side x side x 3: the class colour with noise and a random bright square."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 25, (side, side, 3)), 0, 255)
    top, left = rng.integers(0, side // 2, size=2)
    pixels[top : top + side // 3, left : left + side // 3] = 240
    return pixels.astype(np.uint8)


def write_folder(root: Path, per_class: int = 16, side: int = 16) -> Path:
    """root/<class>/<n>.png|jpg, a README beside the classes (ignored: not a picture)."""
    from PIL import Image

    for number, (name, colour) in enumerate(COLOURS.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = Image.fromarray(picture(colour, seed=number * 1000 + i, side=side))
            suffix = "jpg" if i % 4 == 3 else "png"
            image.save(folder / f"{i:03d}.{suffix}")
    (root / "README.txt").write_text("pictures of three colours\n")
    return root
