"""MLflow "model from code" for language models: what MLflow runs when a registered GPT loads.

`load_context` rebuilds the GPT from its JSON spec and safetensors weights and reads the tokenizer
files logged beside them (nothing is unpickled); `predict` is `LanguagePredictor.predict`
(tasks/lm/predictor.py documents inputs, params and outputs).
"""

from __future__ import annotations

import warnings
from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel

# MLflow nags about missing predict() type hints; the logged signature is this model's schema
warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")


class TrainpipeLanguageModel(PythonModel):
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
