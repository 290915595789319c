"""MLflow "model from code" for language models: what MLflow runs when a registered GPT loads.

`load_context` rebuilds the GPT from its JSON spec and safetensors weights and reads the tokenizer
files logged beside them (nothing is unpickled); `predict` is `LanguagePredictor.predict`
(tasks/lm/predictor.py documents inputs, params and outputs).
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class TrainpipeLanguageModel(PythonModel):
    # The predictor checks its inputs itself (by column name, any real dtype); MLflow's type-hint
    # validation would be a second, conflicting schema (and warns on every load without one).
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        from trainpipe.tasks.lm.predictor import LanguagePredictor

        artifacts = context.artifacts
        self.predictor = LanguagePredictor.from_files(
            artifacts["spec"], artifacts["weights"], artifacts["tokenizer"]
        )

    # no type hints: MLflow would read them as a second schema; the logged signature is the schema
    def predict(self, context, model_input, params=None):  # noqa: ANN001
        return self.predictor.predict(model_input, params)


mlflow.models.set_model(TrainpipeLanguageModel())
