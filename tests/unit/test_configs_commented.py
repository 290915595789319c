"""Every key in configs/ carries a comment (on its line or the line above), so the tree documents itself."""

from __future__ import annotations

import re
from pathlib import Path

from trainpipe.config import config_dir

KEY = re.compile(r"^(\s*)(?:- )?([A-Za-z_][\w.]*|\"[^\"]+\")\s*:")
# keys whose meaning is fixed by Hydra itself and explained once in the file's header
SELF_EXPLAINING = {"defaults", "_target_", "_partial_"}


def uncommented_keys(path: Path) -> list[str]:
    missing = []
    previous = ""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = KEY.match(line)
        if (
            match
            and match.group(2) not in SELF_EXPLAINING
            and "#" not in line
            and not previous.strip().startswith("#")
        ):
            missing.append(f"{path.name}:{number}: {line.strip()}")
        if line.strip():
            previous = line
    return missing


def test_every_config_key_is_commented() -> None:
    files = sorted(config_dir().rglob("*.yaml"))
    assert len(files) > 20
    missing = [m for f in files for m in uncommented_keys(f)]
    assert not missing, "\n".join(missing)
