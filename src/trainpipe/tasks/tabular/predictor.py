"""A trained tabular model ready to predict: the one implementation behind `trainpipe eval`, the
model package and the registered MLflow model.

Input (what a user hands to `predict`):
- a DataFrame: columns are matched by NAME (order does not matter, extra columns are ignored,
  a missing one is an error naming it);
- a numpy array or a list of lists, columns in the training feature order;
- a single row as a 1-D array or list.
Values are raw, as in the training table: numbers, category strings or booleans, dates as
strings or datetimes, missing values (None / NaN: imputed as in training).
Output: class labels typed like the training target (ints stay ints), class probabilities
(`params={"output": "probabilities"}`), or floats for regression.
Batch scoring (`trainpipe predict`, `score`): a `prediction` column (label or value) and, for a
classifier asked for probabilities, `probability_<class>` per class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from trainpipe.data.columns import encode_frame, legacy_plan
from trainpipe.errors import DataError
from trainpipe.packaging import checkpoint_weights
from trainpipe.tasks.base import ScoreOptions
from trainpipe.tasks.tabular.model import FeatureModel

OUTPUTS = ("label", "probabilities")


class TabularPredictor:
    data_kind = "table"

    def __init__(self, spec: dict[str, Any], model: FeatureModel) -> None:
        self.spec = spec
        self.model = model.eval()
        self.feature_names: list[str] = list(spec["feature_names"])
        self.plan = spec.get("columns") or legacy_plan(self.feature_names, spec["feature_mean"])

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    def from_files(cls, spec_path: str | Path, weights_path: str | Path) -> TabularPredictor:
        """From a model package's spec.json + model.safetensors (nothing unpickled)."""
        from safetensors.torch import load_file

        spec = json.loads(Path(spec_path).read_text())
        model = FeatureModel(spec, from_file=True)
        model.load_state_dict(load_file(str(weights_path)))
        return cls(spec, model)

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> TabularPredictor:
        """From a training checkpoint (already loaded with weights_only=True)."""
        spec = checkpoint["trainpipe_model"]
        model = FeatureModel(spec, from_file=True)
        model.load_state_dict(checkpoint_weights(checkpoint))
        return cls(spec, model)

    # -- predicting -------------------------------------------------------------------------
    def rows(self, model_input: Any) -> np.ndarray:
        """Any accepted input → float32 [rows, encoded inputs], through the column plan learned in
        training (data/columns.py): categories to indices (unseen → unknown), missing numbers and
        dates imputed with the training medians, dates parsed.

        Refuses (ValueError naming the column) what no statistic covers: a word in a numeric
        column, an infinite number, a date that does not parse.
        """
        if isinstance(model_input, pd.DataFrame):
            missing = [name for name in self.feature_names if name not in model_input.columns]
            if missing:
                raise ValueError(
                    f"input is missing feature column(s) {missing}; "
                    f"the model was trained on {self.feature_names}"
                )
            frame = model_input[self.feature_names].reset_index(drop=True)
        else:
            rows = np.asarray(model_input, dtype=object)
            if rows.ndim == 1:
                rows = rows[None, :]
            if rows.ndim != 2 or rows.shape[1] != len(self.feature_names):
                raise ValueError(
                    f"input has shape {rows.shape}; expected [rows, {len(self.feature_names)}] "
                    f"(features {self.feature_names})"
                )
            # object columns: numbers, words and dates as given; None reads as missing
            frame = pd.DataFrame(rows, columns=self.feature_names).infer_objects()
        return encode_frame(frame, self.plan)

    def outputs(self, rows: np.ndarray, device: str = "cpu") -> torch.Tensor:
        """The model's raw outputs (logits, or standardised values) for float32 rows."""
        self.model.to(device)
        with torch.inference_mode():
            return self.model(torch.from_numpy(rows).to(device)).float().cpu()

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        output = (params or {}).get("output", "label")
        if output not in OUTPUTS:
            raise ValueError(f"params.output must be one of {OUTPUTS}, got {output!r}")
        raw = self.outputs(self.rows(model_input))
        if self.spec.get("class_values") is None:  # regression
            return pd.Series(self._values(raw), name=self.spec["target_name"])
        probabilities = torch.softmax(raw, dim=-1).numpy()
        if output == "probabilities":
            return pd.DataFrame(probabilities, columns=self._class_names())
        return pd.Series(self._labels(probabilities), name=self.spec["target_name"])

    def _values(self, raw: torch.Tensor) -> np.ndarray:
        return self.model.to_target_scale(raw).squeeze(-1).numpy().astype(np.float64)

    def _labels(self, probabilities: np.ndarray) -> list[Any]:
        class_values = self.spec["class_values"]
        return [class_values[i] for i in probabilities.argmax(axis=1)]

    def _class_names(self) -> list[str]:
        return [str(v) for v in self.spec["class_values"]]

    # -- batch scoring (trainpipe predict) --------------------------------------------------
    def input_columns(self) -> list[str]:
        return list(self.feature_names)

    def output_columns(self, options: ScoreOptions) -> list[str]:
        wants_probabilities = options.probabilities and self.spec.get("class_values") is not None
        extra = [f"probability_{c}" for c in self._class_names()] if wants_probabilities else []
        return ["prediction", *extra]

    def score(self, frame: pd.DataFrame, options: ScoreOptions) -> dict[str, Any]:
        try:
            return self._score(frame, options)
        except DataError:
            if not options.skip_bad:
                raise
        # some rows cannot be read (a word in a numeric column, inf, a date that does not parse):
        # find them one by one (only on this slow path) and give them None outputs
        good = np.array([self._readable(frame.iloc[[i]]) for i in range(len(frame))], dtype=bool)
        columns = self._score(frame[good], options)
        for name, values in columns.items():
            full = np.full(len(frame), None, dtype=object)
            full[good] = np.asarray(values, dtype=object)
            columns[name] = full
        return columns

    def _readable(self, row: pd.DataFrame) -> bool:
        try:
            self.rows(row)
        except ValueError:
            return False
        return True

    def _score(self, frame: pd.DataFrame, options: ScoreOptions) -> dict[str, Any]:
        try:
            rows = self.rows(frame)
        except ValueError as err:  # the input's fault (a word, inf, a bad date): named by rows()
            raise DataError(str(err)) from None
        step = options.batch_size
        raw = (
            torch.cat(
                [
                    self.outputs(rows[i : i + step], options.device)
                    for i in range(0, len(rows), step)
                ]
            )
            if len(rows)
            else self.outputs(rows, options.device)
        )
        if self.spec.get("class_values") is None:
            return {"prediction": self._values(raw)}
        probabilities = torch.softmax(raw, dim=-1).numpy()
        columns: dict[str, Any] = {"prediction": self._labels(probabilities)}
        if options.probabilities:
            for i, name in enumerate(self._class_names()):
                columns[f"probability_{name}"] = probabilities[:, i]
        return columns
