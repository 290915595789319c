"""A tokenizer as {file name: text}: how it travels inside checkpoints and specs (weights-only
safe), and back."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def tokenizer_files(tokenizer: Any) -> dict[str, str]:
    """The tokenizer's files as {name: text}: they travel inside checkpoints (weights-only safe)."""
    with tempfile.TemporaryDirectory() as tmp:
        return {path.name: path.read_text() for path in tokenizer.save(tmp)}


def load_files_tokenizer(spec: dict[str, Any]) -> Any:
    from trainpipe.data.tokenizers import load_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        for name, text in spec["tokenizer_files"].items():
            (Path(tmp) / name).write_text(text)
        return load_tokenizer(tmp, key="model_uri")
