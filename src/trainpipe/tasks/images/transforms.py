"""Per-sample transforms of image batches (torchvision transforms v2), run by the project's loader
in its worker processes (data/loader.py): a cached uint8 row [size·size·3] → float32 [3, size,
size] in [0, 1]; for training, a random resized crop and a horizontal flip first.

Their random draws come from torch's RNG, which the loader seeds per batch from (seed, epoch,
rank, batch number): the augmentation of a batch is the same in any worker and after a resume,
so the augmentation RNG is, in effect, part of the checkpoint (the loader's position).
Normalisation is not here: the model holds the training split's statistics (model.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torchvision.transforms import v2

SampleTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class ImageTransform:
    """A picklable (features, target) transform: picklable, so worker processes can take it."""

    def __init__(self, size: int, augment: bool, crop_scale: float = 1.0, hflip: float = 0.0):
        self.size = size
        steps: list[Any] = []
        if augment and crop_scale < 1.0:
            steps.append(v2.RandomResizedCrop(size, scale=(crop_scale, 1.0), antialias=True))
        if augment and hflip > 0:
            steps.append(v2.RandomHorizontalFlip(hflip))
        steps.append(v2.ToDtype(torch.float32, scale=True))
        self.pipeline = v2.Compose(steps)

    def __call__(
        self, features: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image = features.view(self.size, self.size, 3).permute(2, 0, 1)  # HWC → CHW, no copy
        return self.pipeline(image), target


def split_transforms(data: Mapping[str, Any], size: int) -> dict[str, SampleTransform]:
    """The transform of each split: augmented for training (if data.augment), plain otherwise."""
    plain = ImageTransform(size, augment=False)
    train = ImageTransform(
        size, bool(data["augment"]), float(data["crop_scale"]), float(data["hflip"])
    )
    return {"train": train, "val": plain, "test": plain}


def to_batch(images: Any) -> torch.Tensor:
    """uint8 [N, size, size, 3] numpy → float32 [N, 3, size, size] in [0, 1] (serving)."""
    tensor = torch.as_tensor(images)
    return tensor.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
