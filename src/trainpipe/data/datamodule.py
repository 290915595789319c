"""The LightningDataModule of every task: prepared splits served by a loader factory.

The data is prepared once, before the job starts (docs/architecture.md, "The path of one job"),
so this module prepares nothing: it asks `make_loader(split, shuffle, rank, world_size)` for
each split's loader. It shards the data itself (trainer.use_distributed_sampler is false): see
data/sampler.py for why evaluation shards are not padded. On a GPU each loader is placed for the
device (data/loader.py: `place_on`): small splits live on the GPU, others come from pinned memory.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
from torch.utils.data import DataLoader

from trainpipe.data.loader import place_on

LoaderFactory = Callable[[str, bool, int, int], DataLoader]


class PreparedDataModule(L.LightningDataModule):
    def __init__(self, make_loader: LoaderFactory) -> None:
        super().__init__()
        self.make_loader = make_loader

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
