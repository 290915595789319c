"""The LightningDataModule of every task: prepared splits served by a loader factory.

The data is prepared once, before the job starts (docs/architecture.md, "The path of one job"),
so this module prepares nothing: each split's loader comes from the task's loader function
(`batch_loader` for tables, `window_loader` for tokens) with the data config's batch size, seed
and workers. It shards the data itself (trainer.use_distributed_sampler is false): see
data/sampler.py for why evaluation shards are not padded. On a GPU each loader is placed for the
device (data/loader.py: `place_on`): small splits live on the GPU, others come from pinned memory.
A task may give per-split sample transforms (`transforms`: split → `transform(features, target)`),
handed to its loader function as `transform=`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from trainpipe.data.loader import place_on

# loader(split, batch_size=, shuffle=, seed=, num_workers=, rank=, world_size=) -> DataLoader
LoaderFunction = Callable[..., DataLoader]


class PreparedDataModule(L.LightningDataModule):
    def __init__(
        self,
        loader: LoaderFunction,
        splits: Mapping[str, Any],
        data_conf: Mapping[str, Any],
        transforms: Mapping[str, Callable[..., Any]] | None = None,
    ) -> None:
        super().__init__()
        self.loader = loader
        self.splits = splits
        self.data_conf = data_conf
        self.transforms = dict(transforms or {})

    def make_loader(self, split: str, shuffle: bool, rank: int, world_size: int) -> DataLoader:
        """This rank's loader over one split (on the host; `_loader` places it for the device)."""
        transform = {"transform": self.transforms[split]} if split in self.transforms else {}
        return self.loader(
            self.splits[split],
            batch_size=self.data_conf["batch_size"],
            shuffle=shuffle,
            seed=self.data_conf["seed"],
            num_workers=self.data_conf.get("num_workers", 0),
            rank=rank,
            world_size=world_size,
            **transform,
        )

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        trainer = self.trainer
        if trainer is None:
            return self.make_loader(split, shuffle, 0, 1)
        loader = self.make_loader(split, shuffle, trainer.global_rank, trainer.world_size)
        return place_on(loader, trainer.strategy.root_device)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
