"""`trainpipe predict data.path=DIR`: a folder of pictures scored by an image model, one row per
image (found recursively; other files and hidden ones are ignored, as training ignores them).

Each row has a `path` column — the file, relative to the folder — copied to the output so it says
which file each prediction is for, and the model's image column holding the same file. Files are
listed in sorted order, so chunk i is the same pictures on every run (resuming relies on it); the
digest covers every picture's path and bytes, so a changed picture is another job.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainpipe.errors import DataError
from trainpipe.predict.readers import READ_BLOCK_ROWS
from trainpipe.tasks.images.decode import is_image_file

PATH_COLUMN = "path"


class ImageFolderReader:
    def __init__(self, data: dict[str, Any]) -> None:
        self.root = Path(os.path.expanduser(str(data["path"]))).resolve()
        if not self.root.is_dir():
            raise DataError(f"data.path: {self.root} is not a folder")
        self.files = _images(self.root)
        if not self.files:
            raise DataError(f"data.path: {self.root} holds no images")
        self.base = self.root
        self.passed = [PATH_COLUMN]
        self.columns = [PATH_COLUMN]
        self.rows: int | None = len(self.files)
        self._digest: str | None = None

    def match(self, inputs: list[str], kind: str) -> None:
        """The model's image column is the picture's path too (under whatever name it reads)."""
        if kind != "image":
            raise DataError(
                f"data.path: {self.root} is a folder of images; this model was trained on "
                f"{kind} data (give it a file of rows)"
            )
        if len(inputs) != 1:
            raise DataError(
                f"data.path: {self.root} is a folder of images; this model reads the columns "
                f"{inputs} of a table, not pictures"
            )
        self.columns = list(dict.fromkeys([PATH_COLUMN, inputs[0]]))

    def batches(self) -> Iterator[Any]:
        import pyarrow as pa

        for start in range(0, len(self.files), READ_BLOCK_ROWS):
            names = self.files[start : start + READ_BLOCK_ROWS]
            yield pa.table({name: pa.array(names, pa.string()) for name in self.columns})

    def digest(self) -> str:
        if self._digest is None:  # asked for the job key, the record and the result: hash once
            from trainpipe.config.sources import file_digest

            digest = hashlib.sha256()
            for name in self.files:
                digest.update(f"{name}:{file_digest(self.root / name)}\n".encode())
            self._digest = digest.hexdigest()
        return self._digest

    def describe(self) -> str:
        return str(self.root)


def _images(root: Path) -> list[str]:
    """The pictures under `root` (any depth, hidden folders skipped), relative, sorted."""
    found = []
    for dirpath, dirnames, names in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [
            Path(dirpath, n).relative_to(root).as_posix()
            for n in names
            if is_image_file(Path(dirpath, n))
        ]
    return sorted(found)
