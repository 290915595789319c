"""Data layer on Hugging Face `datasets` (sources → prepared splits → batched loaders).

`ClassificationDataModule` is imported lazily: it pulls in lightning, which the config-only
code paths must not import.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "ClassificationDataModule":
        from trainpipe.data.datamodule import ClassificationDataModule

        return ClassificationDataModule
    raise AttributeError(name)
