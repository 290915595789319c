"""What a regressor learns: MSE against the standardised target (so the loss scale does not depend
on the target's units); RMSE, MAE and R² are reported on the target's own scale.

torch is imported by the methods that compute: the task, and so its head, is looked up when a
config is checked, before torch is imported."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torchmetrics import Metric


class RegressionHead:
    # whether larger is better, next to the metrics below (the promotion gate reads it)
    directions = {"rmse": "min", "mae": "min", "r2": "max"}

    def loss(self, model: Any, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.mse_loss(outputs.squeeze(-1), model.standardise_target(target))

    def metrics(self, spec: dict[str, Any]) -> dict[str, Metric]:
        from torchmetrics import MeanAbsoluteError, MeanSquaredError, R2Score

        return {
            "rmse": MeanSquaredError(squared=False),
            "mae": MeanAbsoluteError(),
            "r2": R2Score(),
        }

    def metric_inputs(
        self, model: Any, outputs: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return model.to_target_scale(outputs).squeeze(-1), target
