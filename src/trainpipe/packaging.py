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

from trainpipe.runtime.atomic import atomic_path, atomic_write_text

MANIFEST = "trainpipe_model.json"
# the files every task's package holds (a task may add more, e.g. the LM's tokenizer directory)
WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "spec.json"
EXAMPLE_FILE = "input_example.json"
CHECKPOINT_PREFIX = "model."  # the LightningModule attribute that holds the net


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


def write_weights_and_spec(directory: Path, weights: dict[str, Any], spec: dict[str, Any]) -> None:
    """The net's weights as safetensors (contiguous CPU tensors) and its JSON spec."""
    from safetensors.torch import save_file

    state = {name: t.detach().cpu().contiguous() for name, t in weights.items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    atomic_write_text(directory / SPEC_FILE, json.dumps(spec, indent=2))


def finish_package(
    directory: Path,
    *,
    task: str,
    pyfunc_module: str,
    example: Any,
    predictions: Any,
    params: dict[str, Any],
    metadata: dict[str, Any],
    more_artifacts: dict[str, str] | None = None,
) -> ModelPackage:
    """Finish a package whose weights and spec are written: the input example (a DataFrame, as a
    REST client would send it), the signature inferred from the predictions made on it, and the
    manifest — written last, so a manifest only ever sits beside a complete package."""
    from mlflow.models import infer_signature

    atomic_write_text(
        directory / EXAMPLE_FILE, example.to_json(orient="split", index=False, date_format="iso")
    )
    # No input schema on purpose: MLflow's column schema refuses numpy arrays, paths, bytes and
    # lists in one column, and its tensor schema any dtype but float64; each task's predictor
    # checks its inputs itself, by name.
    signature = infer_signature(None, predictions, params=params)
    package = ModelPackage(
        directory=directory,
        task=task,
        pyfunc_module=pyfunc_module,
        artifacts={"weights": WEIGHTS_FILE, "spec": SPEC_FILE, **(more_artifacts or {})},
        signature=signature.to_dict(),
        input_example=EXAMPLE_FILE,
        metadata={"task": task, **metadata},
        extra_files=[WEIGHTS_FILE],
    )
    package.write_manifest()
    return package


def checkpoint_weights(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The net's state dict inside a Lightning checkpoint (loaded with weights_only=True)."""
    state = checkpoint["state_dict"]
    n = len(CHECKPOINT_PREFIX)
    return {k[n:]: v for k, v in state.items() if k.startswith(CHECKPOINT_PREFIX)}
