"""MLflow "model from code" for the tabular tasks: what MLflow runs when a registered model loads.

`load_context` rebuilds the model from the JSON spec and the safetensors weights logged beside
it (nothing is unpickled); `predict` is `TabularPredictor.predict` (tasks/tabular/predictor.py
documents the accepted inputs and the outputs).
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class TrainpipeTabularModel(PythonModel):
    # The predictor checks its inputs itself (by column name, any real dtype); MLflow's type-hint
    # validation would be a second, conflicting schema (and warns on every load without one).
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        from trainpipe.tasks.tabular.predictor import TabularPredictor

        artifacts = context.artifacts
        self.predictor = TabularPredictor.from_files(artifacts["spec"], artifacts["weights"])

    # no type hints: MLflow would read them as a second schema; the logged signature is the schema
    def predict(self, context, model_input, params=None):  # noqa: ANN001
        return self.predictor.predict(model_input, params)


mlflow.models.set_model(TrainpipeTabularModel())
