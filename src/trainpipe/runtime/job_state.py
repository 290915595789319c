"""`<output dir>/job.json`: the job's MLflow run id and how its last attempt ended."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainpipe.runtime.atomic import atomic_write_text

FILE_NAME = "job.json"


@dataclass
class JobState:
    run_id: str | None = None
    # new | running | complete | failed | preempted | interrupted | pruned | user_error
    status: str = "new"
    summary: dict[str, Any] = field(default_factory=dict)
    # what the job was: its config fingerprint (data files' content aside) and data digest
    identity: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, output_dir: Path) -> JobState:
        path = output_dir / FILE_NAME
        if not path.is_file():
            return cls()
        return cls(**json.loads(path.read_text()))

    def save(self, output_dir: Path) -> None:
        atomic_write_text(output_dir / FILE_NAME, json.dumps(asdict(self), indent=2, default=str))
