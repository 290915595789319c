"""Regression on table rows: MSE on the standardised target; RMSE, MAE and R² on its own scale."""

from trainpipe.tasks.base import Objective
from trainpipe.tasks.regression.head import RegressionHead
from trainpipe.tasks.tabular.task import TabularTask

TASK = TabularTask(
    name="regression",
    objective=Objective("val/rmse", "min"),
    target_kind="values",
    head=RegressionHead(),
)
