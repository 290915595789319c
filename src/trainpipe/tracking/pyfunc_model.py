"""MLflow "model from code": the registered model's predict logic, loaded without pickle.

MLflow runs this file when the model is loaded; `load_context` rebuilds the net from the JSON
spec and the safetensors weights logged beside it. Nothing is unpickled.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

OUTPUTS = ("label", "probabilities")
# MLflow nags about missing predict() type hints; the logged signature is this model's schema
warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")


class TrainpipeClassifier(PythonModel):
    """Rows of raw features → class labels.

    Input: a float64 numpy array [rows, features] or a DataFrame of float columns, features in the
    training order (`metadata.feature_names` in the MLmodel file). MLflow checks the input against
    the logged tensor signature before `predict` sees it.

    `params={"output": "probabilities"}` returns one probability column per class instead.
    """

    def load_context(self, context: Any) -> None:
        from safetensors.torch import load_file

        from trainpipe.models.nets import FeatureClassifier, build_net

        spec = json.loads(Path(context.artifacts["spec"]).read_text())
        net = build_net(spec["net"], spec["input_shape"], spec["num_classes"])
        self.model = FeatureClassifier(net, spec["input_shape"], spec["num_features"])
        self.model.load_state_dict(load_file(context.artifacts["weights"]))
        self.model.eval()
        self.feature_names: list[str] = spec["feature_names"]
        self.class_names: list[str] = spec["class_names"]

    # no type hints here: MLflow reads predict's hints as a schema; the logged signature is the schema
    def predict(self, context, model_input, params=None):  # noqa: ANN001
        import torch

        output = (params or {}).get("output", "label")
        if output not in OUTPUTS:
            raise ValueError(f"params.output must be one of {OUTPUTS}, got {output!r}")
        if isinstance(model_input, pd.DataFrame):
            columns = (
                self.feature_names
                if set(self.feature_names) <= set(model_input.columns)
                else model_input.columns
            )
            model_input = model_input[columns]
        rows = np.array(model_input, dtype=np.float32).reshape(-1, len(self.feature_names))
        with torch.inference_mode():
            probabilities = torch.softmax(self.model(torch.from_numpy(rows)), dim=-1).numpy()
        if output == "probabilities":
            return pd.DataFrame(probabilities, columns=self.class_names)
        return pd.Series(np.asarray(self.class_names)[probabilities.argmax(axis=1)], name="label")


mlflow.models.set_model(TrainpipeClassifier())
