"""The LightningDataModule of classification data: prepared splits served as batched loaders."""

from __future__ import annotations

from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from trainpipe.data.loader import batch_loader
from trainpipe.data.prepare import PreparedData, prepare


class ClassificationDataModule(L.LightningDataModule):
    """Train/val/test loaders over a `datasets`-backed source (see configs/data/)."""

    def __init__(self, **conf: Any) -> None:
        super().__init__()
        self.conf = conf
        self.batch_size: int = conf["batch_size"]
        self.data: PreparedData | None = None

    def prepare_data(self) -> None:
        # Runs on one process per node: builds the on-disk caches the other ranks then read
        # (already done when this process prepared the data itself).
        if self.data is None:
            prepare(self.conf)

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            self.data = prepare(self.conf)

    @property
    def prepared(self) -> PreparedData:
        if self.data is None:
            self.setup()
        assert self.data is not None
        return self.data

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        # This module shards the data itself (trainer.use_distributed_sampler is false):
        # see data/sampler.py for why evaluation shards are not padded.
        trainer = self.trainer
        return batch_loader(
            self.prepared.splits[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            seed=self.conf["seed"],
            num_workers=self.conf.get("num_workers", 0),
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
