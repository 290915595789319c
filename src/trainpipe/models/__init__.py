"""Models: LightningModules per task over the plain nets in `nets/` (imported lazily)."""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "ClassificationModule":
        from trainpipe.models.classification import ClassificationModule

        return ClassificationModule
    raise AttributeError(name)
