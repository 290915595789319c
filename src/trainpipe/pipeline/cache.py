"""The stage cache: a stage's output, kept under a content hash of everything it was made from.

    key(stage) = sha256 of {stage name, data digest, the stage's resolved config, the code version
                 (trainpipe version, git commit, digest of uncommitted changes), the tracking
                 store, and the upstream stage's key and output}

Chaining the upstream stage's key makes any change upstream rerun every stage after it, and only
those: a new evaluation setting reruns evaluate, register and promote; new data reruns all.
Entries live in `<pipeline dir>/cache/<stage>/<key>.json` (written atomically), so going back to
an earlier config finds its outputs again. Pure Python and JSON: no MLflow, no torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trainpipe.runtime.atomic import atomic_write_text

KEY_LENGTH = 16  # hex digits: 64 bits, plenty for one experiment's history of configs


@dataclass(frozen=True)
class CacheEntry:
    """One stage's output and where it came from."""

    stage: str
    key: str
    output: dict[str, Any]
    run_id: str | None  # the MLflow run that produced the output
    pipeline_run_id: str | None  # the pipeline (parent) run it was produced in
    created: str  # ISO time, for people


def canonical(value: Any) -> str:
    """A stable JSON text of `value`: sorted keys, no whitespace, non-JSON values as strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def stage_key(
    stage: str,
    data_digest: str,
    config: dict[str, Any],
    code_version: str,
    tracking_uri: str,
    upstream: CacheEntry | None,
) -> str:
    """The content hash of a stage's inputs (see the module docstring)."""
    inputs = {
        "stage": stage,
        "data_digest": data_digest,
        "config": config,
        "code": code_version,
        "tracking_uri": tracking_uri,
        "upstream": None if upstream is None else {"key": upstream.key, "output": upstream.output},
    }
    return hashlib.sha256(canonical(inputs).encode()).hexdigest()[:KEY_LENGTH]


class StageCache:
    """`<pipeline dir>/cache/`: one JSON file per (stage, key)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, stage: str, key: str) -> Path:
        return self.directory / stage / f"{key}.json"

    def get(self, stage: str, key: str) -> CacheEntry | None:
        path = self.path(stage, key)
        if not path.is_file():
            return None
        try:
            return CacheEntry(**json.loads(path.read_text()))
        except (ValueError, TypeError):  # unreadable (hand-edited, older format): a miss
            return None

    def put(self, entry: CacheEntry) -> Path:
        return atomic_write_text(self.path(entry.stage, entry.key), canonical(asdict(entry)))
