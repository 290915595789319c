"""Classification of table rows: cross-entropy; accuracy and macro F1; labels out."""

from trainpipe.tasks.base import Objective
from trainpipe.tasks.classification.head import ClassificationHead
from trainpipe.tasks.tabular.task import TabularTask

TASK = TabularTask(
    name="classification",
    objective=Objective("val/acc", "max"),
    target_kind="classes",
    head=ClassificationHead(),
)
