"""Find the configs/ tree: inside an installed wheel, or at the top of a source checkout."""

from __future__ import annotations

from pathlib import Path


def config_dir() -> Path:
    """The directory holding train.yaml/eval.yaml and the config groups."""
    package_dir = Path(__file__).resolve().parents[1]
    for candidate in (package_dir / "configs", package_dir.parents[1] / "configs"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"trainpipe configs not found in {package_dir / 'configs'} or {package_dir.parents[1] / 'configs'}"
    )
