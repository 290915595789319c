"""A trained image classifier ready to predict: behind `trainpipe eval`, the model package and
the registered MLflow model.

Input (what a user has at serving time):
- a DataFrame with the image column (`data.image_column`, default `image`; a DataFrame of one
  column is read whatever its name) whose cells are file paths, raw bytes, base64 strings (what
  JSON carries: `mlflow models serve`), datasets' {"bytes", "path"} dicts or uint8 arrays;
- a list of those; a single path or bytes;
- a numpy uint8 array HxWx3 (one picture; HxW grayscale too) or NxHxWx3 (a batch).
Each picture is decoded and resized exactly as the training pictures were (decode.py).
Output: a DataFrame with `label` (the class name) and `probabilities` (one per class, in the
order of `spec["classes"]`); `params={"output": "probabilities"}` gives one column per class.
Batch scoring (`trainpipe predict`, `score`): the image column's cells as above (a relative path
is resolved against the input table's folder, as in training); a `prediction` column (the label)
and, asked for probabilities, `probability_<class>` per class — the tabular predictor's names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from trainpipe.errors import DataError
from trainpipe.packaging import checkpoint_weights
from trainpipe.tasks.base import ScoreOptions
from trainpipe.tasks.images.decode import array_image, fit_square, from_text, open_image
from trainpipe.tasks.images.model import ImageNet
from trainpipe.tasks.images.transforms import to_batch

OUTPUTS = ("label", "probabilities")
BATCH = 256  # pictures per forward pass


class ImagePredictor:
    data_kind = "image"

    def __init__(self, spec: dict[str, Any], model: ImageNet) -> None:
        self.spec = spec
        self.model = model.eval()
        self.size = int(spec["image_size"])
        self.classes: list[str] = list(spec["classes"])

    @classmethod
    def from_files(cls, spec_path: str | Path, weights_path: str | Path) -> ImagePredictor:
        """From a model package's spec.json + model.safetensors (nothing unpickled)."""
        from safetensors.torch import load_file

        spec = json.loads(Path(spec_path).read_text())
        model = ImageNet(spec)
        model.load_state_dict(load_file(str(weights_path)))
        return cls(spec, model)

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> ImagePredictor:
        """From a training checkpoint (already loaded with weights_only=True)."""
        spec = checkpoint["trainpipe_model"]
        model = ImageNet(spec)
        model.load_state_dict(checkpoint_weights(checkpoint))
        return cls(spec, model)

    # -- input -------------------------------------------------------------------------------
    def pictures(self, model_input: Any) -> np.ndarray:
        """Any accepted input → uint8 [N, size, size, 3]; ValueError naming what is wrong."""
        if isinstance(model_input, pd.DataFrame):
            column = self.spec.get("image_column", "image")
            if column in model_input.columns:
                cells = list(model_input[column])
            elif len(model_input.columns) == 1:
                cells = list(model_input.iloc[:, 0])
            else:
                raise ValueError(
                    f"input has no image column {column!r} (columns: {list(model_input.columns)})"
                )
        elif isinstance(model_input, pd.Series):
            cells = list(model_input)
        elif isinstance(model_input, np.ndarray) and model_input.dtype != object:
            cells = list(model_input) if model_input.ndim == 4 else [model_input]
        elif isinstance(model_input, (str, bytes, Path)):
            cells = [model_input]
        else:
            cells = list(model_input)
        if not cells:
            raise ValueError("input holds no images")
        return np.stack([self._picture(cell, i) for i, cell in enumerate(cells)])

    def _picture(self, cell: Any, position: int) -> np.ndarray:
        try:
            if isinstance(cell, str):
                cell = from_text(cell)
            elif isinstance(cell, Path):
                cell = str(cell)
            image = array_image(cell) if isinstance(cell, np.ndarray) else open_image(cell)
            return fit_square(image, self.size)
        except (OSError, ValueError, SyntaxError) as err:
            raise ValueError(f"image {position} of the input cannot be read: {err}") from None

    # -- predicting --------------------------------------------------------------------------
    def outputs(
        self, pictures: np.ndarray, device: str = "cpu", batch: int = BATCH
    ) -> torch.Tensor:
        """Logits [N, classes] for uint8 [N, size, size, 3] pictures, `batch` at a time."""
        self.model.to(device)
        found = []
        with torch.inference_mode():
            for start in range(0, len(pictures), batch):
                batch_ = to_batch(pictures[start : start + batch]).to(device)
                found.append(self.model(batch_).float().cpu())
        return torch.cat(found)

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        output = (params or {}).get("output", "label")
        if output not in OUTPUTS:
            raise ValueError(f"params.output must be one of {OUTPUTS}, got {output!r}")
        probabilities = torch.softmax(self.outputs(self.pictures(model_input)), dim=-1).numpy()
        if output == "probabilities":
            return pd.DataFrame(probabilities.astype(np.float64), columns=self.classes)
        return pd.DataFrame(
            {
                "label": [self.classes[i] for i in probabilities.argmax(axis=1)],
                "probabilities": [row.astype(np.float64).tolist() for row in probabilities],
            }
        )

    # -- batch scoring (trainpipe predict) --------------------------------------------------
    @property
    def image_column(self) -> str:
        return str(self.spec.get("image_column", "image"))

    def input_columns(self) -> list[str]:
        return [self.image_column]

    def output_columns(self, options: ScoreOptions) -> list[str]:
        extra = [f"probability_{c}" for c in self.classes] if options.probabilities else []
        return ["prediction", *extra]

    def score(self, frame: pd.DataFrame, options: ScoreOptions) -> dict[str, Any]:
        """The label (+ probabilities) of each row's picture, the values `predict` gives for the
        same pictures. A picture that does not decode: DataError naming its file, or (skip_bad)
        None in every output column of its row."""
        pictures, good = [], []
        for position, cell in enumerate(frame[self.image_column]):
            try:
                pictures.append(self._picture(_resolved(cell, options.base_dir), position))
            except (ValueError, TypeError):
                if not options.skip_bad:
                    raise DataError(
                        f"column {self.image_column!r}: {_named(cell, position)} does not decode "
                        "as an image"
                    ) from None
                continue
            good.append(position)
        names = self.output_columns(options)
        columns: dict[str, Any] = {name: np.full(len(frame), None, dtype=object) for name in names}
        if not good:
            return columns
        # a forward pass of many pictures is what device memory bounds, not a table's batch_size
        logits = self.outputs(np.stack(pictures), options.device, min(options.batch_size, BATCH))
        # softmax, then float64: the numbers `predict` returns for these pictures
        probabilities = torch.softmax(logits, dim=-1).numpy().astype(np.float64)
        columns["prediction"][good] = [self.classes[i] for i in probabilities.argmax(axis=1)]
        for i, name in enumerate(names[1:]):
            columns[name][good] = probabilities[:, i]
        if len(good) == len(frame):  # typed columns, not objects, when no row was skipped
            columns = {name: values.tolist() for name, values in columns.items()}
        return columns


def _resolved(cell: Any, base_dir: str | None) -> Any:
    """A relative path cell as the file beside the input table (training reads them so)."""
    if isinstance(cell, str) and base_dir and len(cell) < 4096:
        beside = Path(base_dir, cell).expanduser()
        if not Path(cell).is_absolute() and beside.is_file():
            return str(beside)
    if cell is None:
        raise ValueError("no image")
    return cell


def _named(cell: Any, position: int) -> str:
    """The cell for a message: the file it names, or where in the chunk its bytes are."""
    if isinstance(cell, str) and len(cell) < 260:  # a path (base64 pictures are longer)
        return f"image {cell!r}"
    return f"the image in row {position}"
