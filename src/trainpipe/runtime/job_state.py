"""`<output dir>/job.json`: the job's MLflow run id and whether it finished, kept across restarts."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FILE_NAME = "job.json"


@dataclass
class JobState:
    run_id: str | None = None
    status: str = "new"  # new | running | complete | failed
    summary: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, output_dir: Path) -> JobState:
        path = output_dir / FILE_NAME
        if not path.is_file():
            return cls()
        return cls(**json.loads(path.read_text()))

    def save(self, output_dir: Path) -> None:
        output_dir.mkdir(parents=True, exist_ok=True)
        tmp = output_dir / f".{FILE_NAME}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2, default=str))
        os.replace(tmp, output_dir / FILE_NAME)
