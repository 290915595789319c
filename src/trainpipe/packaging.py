"""A model package: the files of a deployable model and the manifest that says how to log them.

A task writes the package into `<output dir>/model/` when training ends (weights as safetensors,
a JSON spec, an input example); the registry (`tracking/model_versions.py`) logs and registers it
without knowing which task made it, possibly much later (after a tracking outage, through
`trainpipe sync`). Nothing in a package is pickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainpipe.runtime.atomic import atomic_write_text

MANIFEST = "trainpipe_model.json"


@dataclass
class ModelPackage:
    directory: Path
    task: str
    # the module MLflow runs to load the model ("models from code": nothing unpickled)
    pyfunc_module: str
    # artifact name → file name inside `directory`
    artifacts: dict[str, str]
    # MLflow's ModelSignature as a dict (ModelSignature.to_dict())
    signature: dict[str, Any]
    # file inside `directory` with the input example (a JSON DataFrame in "split" orient)
    input_example: str | None = None
    # shown in the MLmodel file (feature names, classes, tokenizer, …)
    metadata: dict[str, Any] = field(default_factory=dict)
    # files to log beside the model for users outside MLflow (e.g. the raw safetensors)
    extra_files: list[str] = field(default_factory=list)

    def write_manifest(self) -> Path:
        body = {k: v for k, v in asdict(self).items() if k != "directory"}
        return atomic_write_text(self.directory / MANIFEST, json.dumps(body, indent=2))

    @classmethod
    def read(cls, directory: str | Path) -> ModelPackage:
        directory = Path(directory)
        body = json.loads((directory / MANIFEST).read_text())
        return cls(directory=directory, **body)

    def path(self, name: str) -> Path:
        return self.directory / name
