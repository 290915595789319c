"""Log the trained classifier to the job's MLflow run (pickle-free) and register a new version.

Training writes a self-contained *model package* (safetensors weights, JSON spec, input example)
into the output dir first; logging and registering read only that package, so a registration
that has to wait for the tracking server can be done later by `trainpipe sync`.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")


def _requirements() -> list[str]:
    import importlib.metadata

    pins = []
    for package in ("trainpipe", "torch", "safetensors", "mlflow", "numpy", "pandas"):
        try:
            pins.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(package)
    return pins


def write_model_package(
    directory: Path, classifier: Any, spec: dict[str, Any], example_rows: np.ndarray
) -> Path:
    """Weights (safetensors), spec (JSON) and an input example of a FeatureClassifier, in `directory`."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in classifier.state_dict().items()},
        str(directory / "model.safetensors"),
    )
    (directory / "spec.json").write_text(json.dumps(spec, indent=2))
    np.save(directory / "example.npy", np.asarray(example_rows, dtype=np.float64))
    return directory


def log_and_register(
    tracking_uri: str,
    run_id: str,
    model_name: str,
    package: str | Path,
    version_tags: dict[str, str],
) -> tuple[str, str]:
    """Log a model package as a pyfunc model on `run_id` and register it; returns (model URI, version)."""
    import mlflow
    from mlflow.models import infer_signature

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings(
        "ignore", message=r".*type hints to the `predict` method"
    )  # our signature is explicit
    package = Path(package)
    spec = json.loads((package / "spec.json").read_text())
    weights = package / "model.safetensors"
    # A tensor signature (float64 [rows, features]) is the one MLflow lets both numpy arrays and
    # DataFrames through; a column signature would refuse numpy input outright.
    example = np.load(package / "example.npy")
    labels = np.asarray(spec["class_names"])[:1].repeat(len(example))
    signature = infer_signature(example, labels, params={"output": "label"})
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_CODE),
            artifacts={"weights": str(weights), "spec": str(package / "spec.json")},
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
            metadata={"feature_names": spec["feature_names"], "class_names": spec["class_names"]},
        )
        # the raw weights beside the model too, for users outside MLflow
        mlflow.log_artifact(str(weights), artifact_path="weights")
    version = mlflow.register_model(
        info.model_uri, model_name, tags={"run_id": run_id, **version_tags}
    )
    client.update_model_version(model_name, version.version, description=f"trained by run {run_id}")
    return f"models:/{model_name}/{version.version}", str(version.version)


def registered_version(tracking_uri: str, model_name: str, run_id: str) -> str | None:
    """`models:/NAME/VERSION` of the version registered from `run_id`, if there is one."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    versions = client.search_model_versions(f"name='{model_name}' and run_id='{run_id}'")
    return f"models:/{model_name}/{versions[0].version}" if versions else None
