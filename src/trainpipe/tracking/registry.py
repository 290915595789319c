"""Log the trained classifier to the job's MLflow run (pickle-free) and register a new version."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

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


def log_and_register(
    tracking_uri: str,
    run_id: str,
    model_name: str,
    classifier: Any,
    spec: dict[str, Any],
    example_rows: np.ndarray,
    version_tags: dict[str, str],
) -> tuple[str, str]:
    """Log `classifier` (a FeatureClassifier) as a pyfunc model and register it; returns (model URI, version)."""
    import mlflow
    from mlflow.models import infer_signature
    from safetensors.torch import save_file

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "model.safetensors"
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in classifier.state_dict().items()},
            str(weights),
        )
        spec_file = Path(tmp) / "spec.json"
        spec_file.write_text(json.dumps(spec, indent=2))
        # A tensor signature (float64 [rows, features]) is the one MLflow lets both numpy arrays and
        # DataFrames through; a column signature would refuse numpy input outright.
        example = np.asarray(example_rows, dtype=np.float64)
        labels = np.asarray(spec["class_names"])[:1].repeat(len(example))
        signature = infer_signature(example, labels, params={"output": "label"})
        with mlflow.start_run(run_id=run_id), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*type hint.*")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(PYFUNC_CODE),
                artifacts={"weights": str(weights), "spec": str(spec_file)},
                signature=signature,
                input_example=example,
                pip_requirements=_requirements(),
                metadata={
                    "feature_names": spec["feature_names"],
                    "class_names": spec["class_names"],
                },
            )
            # the raw weights beside the model too, for users outside MLflow
            mlflow.log_artifact(str(weights), artifact_path="weights")
    version = mlflow.register_model(
        info.model_uri, model_name, tags={"run_id": run_id, **version_tags}
    )
    client.update_model_version(model_name, version.version, description=f"trained by run {run_id}")
    return f"models:/{model_name}/{version.version}", str(version.version)
