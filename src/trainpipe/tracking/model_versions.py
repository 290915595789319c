"""Log a model package to the job's MLflow run (pickle-free) and register a new version.

The package (packaging.py) was written by the task into the output dir when training ended: the
files plus a manifest naming the "model from code" module, the artifacts, the signature and the
input example. This module logs exactly that, whatever the task, so a registration that has to
wait for the tracking server can be done later by `trainpipe sync`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from trainpipe.packaging import ModelPackage

# the aliases of the registry lifecycle (docs/registry.md): the newest registered version is the
# challenger; `trainpipe models promote` makes a challenger the champion
CHALLENGER = "challenger"
CHAMPION = "champion"
# the version tag naming the model card (the same path in the package dir and the run's artifacts)
CARD_TAG = "model_card"
DESCRIPTION_LIMIT = 5000  # characters MLflow's SQL stores keep of a version's description


def _requirements() -> list[str]:
    pins = []
    for package in ("trainpipe", "torch", "safetensors", "mlflow", "numpy", "pandas"):
        try:
            pins.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(package)
    return pins


def _input_example(package: ModelPackage) -> Any:
    if not package.input_example:
        return None
    import pandas as pd

    return pd.read_json(package.path(package.input_example), orient="split")


def log_and_register(
    tracking_uri: str,
    run_id: str,
    model_name: str,
    package_dir: str | Path,
    version_tags: dict[str, str],
) -> tuple[str, str]:
    """Log a model package as a pyfunc model on `run_id` and register it as a new version (its
    aliases are the caller's: the `alias` journal operation); returns (model URI, version)."""
    import mlflow
    from mlflow.models.signature import ModelSignature

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    package = ModelPackage.read(package_dir)
    code = importlib.util.find_spec(package.pyfunc_module)
    if code is None or code.origin is None:
        raise ModuleNotFoundError(f"model code {package.pyfunc_module} is not installed")
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=code.origin,
            artifacts={name: str(package.path(file)) for name, file in package.artifacts.items()},
            signature=ModelSignature.from_dict(package.signature),
            input_example=_input_example(package),
            pip_requirements=_requirements(),
            metadata=package.metadata,
        )
        for name in package.extra_files:  # e.g. the raw weights, for users outside MLflow
            mlflow.log_artifact(str(package.path(name)), artifact_path="weights")
    tags = {"run_id": run_id, "task": package.task, **version_tags}
    # the client's calls, not mlflow.register_model: the same registration without its prints
    try:
        client.create_registered_model(model_name)
    except mlflow.exceptions.MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    experiment_id = client.get_run(run_id).info.experiment_id
    description = version_description(
        package_dir, version_tags.get(CARD_TAG), run_id, experiment_id
    )
    version = client.create_model_version(
        model_name,
        source=info.model_uri,
        run_id=run_id,
        tags=tags,
        description=description,
        model_id=info.model_id,
    )
    return f"models:/{model_name}/{version.version}", str(version.version)


def version_description(
    package_dir: str | Path, card: str | None, run_id: str, experiment_id: str
) -> str:
    """The model version's description in the UI: the model card (markdown), its plots shown
    from the run's artifacts and linked to them; the sections that do not fit MLflow's limit are
    left to the full card, linked."""
    run_page = f"#/experiments/{experiment_id}/runs/{run_id}"
    lead = f"Trained by run [{run_id}]({run_page})."
    path = Path(package_dir) / card if card else None
    if path is None or not path.is_file():
        return lead
    folder = PurePosixPath(card).parent

    def artifact_links(found: re.Match) -> str:
        caption, artifact = found[1], str(folder / found[2])
        image = f"get-artifact?path={artifact}&run_uuid={run_id}"  # what the MLflow server serves
        return f"[![{caption}]({image})]({run_page}/artifacts/{artifact})"

    # images beside the card are artifacts of the run: the UI cannot resolve the bare file name
    text = re.sub(r"!\[([^\]]*)\]\(([^)/:]+)\)", artifact_links, path.read_text())
    full = f"{lead} The full card: [{card}]({run_page}/artifacts/{card}).\n\n"
    sections = re.split(r"(?m)^(?=## )", text)
    while len(full + "".join(sections)) > DESCRIPTION_LIMIT and len(sections) > 1:
        sections.pop()  # the last sections (the training config) are in the full card
    return (full + "".join(sections))[:DESCRIPTION_LIMIT]


def registered_version(tracking_uri: str, model_name: str, run_id: str) -> str | None:
    """`models:/NAME/VERSION` of the version registered from `run_id`, if there is one."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    versions = client.search_model_versions(f"name='{model_name}' and run_id='{run_id}'")
    return f"models:/{model_name}/{versions[0].version}" if versions else None


def load_registered(model_uri: str, tracking_uri: str | None = None) -> Any:
    """The python model behind a `models:/` or `runs:/` URI, loaded through MLflow's pyfunc."""
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()


def version_of(model_uri: str, tracking_uri: str | None = None) -> Any:
    """The ModelVersion behind `models:/NAME/VERSION` or `models:/NAME@ALIAS` (None for other URIs)."""
    import mlflow

    if not model_uri.startswith("models:/"):
        return None
    name, sep, rest = model_uri[len("models:/") :].partition("/")
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    if "@" in name:
        name, alias = name.split("@", 1)
        return client.get_model_version_by_alias(name, alias)
    if not sep or rest in ("latest", ""):
        versions = client.search_model_versions(f"name='{name}'")
        return max(versions, key=lambda v: int(v.version)) if versions else None
    return client.get_model_version(name, rest)


def training_config(model_uri: str, tracking_uri: str | None = None) -> dict[str, Any] | None:
    """The resolved config of the run that trained a registered model (its config.yaml artifact)."""
    import mlflow
    import yaml

    version = version_of(model_uri, tracking_uri)
    run_id = version.run_id if version is not None else None
    if model_uri.startswith("runs:/"):
        run_id = model_uri[len("runs:/") :].split("/", 1)[0]
    if not run_id:
        return None
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="config.yaml", tracking_uri=tracking_uri
        )
    except Exception:  # a model logged by something else than trainpipe
        return None
    return yaml.safe_load(Path(path).read_text())
