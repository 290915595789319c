"""What a regressor learns: MSE against the standardised target (so the loss scale does not depend
on the target's units); RMSE, MAE and R² are reported on the target's own scale."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanAbsoluteError, MeanSquaredError, Metric, R2Score


class RegressionHead:
    def loss(self, model: Any, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs.squeeze(-1), model.standardise_target(target))

    def metrics(self, spec: dict[str, Any]) -> dict[str, Metric]:
        return {
            "rmse": MeanSquaredError(squared=False),
            "mae": MeanAbsoluteError(),
            "r2": R2Score(),
        }

    def metric_inputs(
        self, model: Any, outputs: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return model.to_target_scale(outputs).squeeze(-1), target
