"""MLflow "model from code" for image classification: what MLflow runs when the registered model
loads. `load_context` rebuilds the net from the JSON spec and the safetensors weights (nothing is
unpickled); `predict` is `ImagePredictor.predict` (predictor.py lists the accepted inputs).
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class TrainpipeImageModel(PythonModel):
    # the predictor checks its inputs itself (paths, bytes, base64, arrays): MLflow's type-hint
    # validation would be a second, conflicting schema
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        from trainpipe.tasks.images.predictor import ImagePredictor

        artifacts = context.artifacts
        self.predictor = ImagePredictor.from_files(artifacts["spec"], artifacts["weights"])

    # no type hints: MLflow would read them as a second schema; the logged signature is the schema
    def predict(self, context, model_input, params=None):  # noqa: ANN001
        return self.predictor.predict(model_input, params)


mlflow.models.set_model(TrainpipeImageModel())
