"""MLflow tracking: run lifecycle, params/metrics, lineage, model logging and the registry.

Knows nothing of the models' insides. mlflow itself is imported only when a tracker is built.
"""

from trainpipe.tracking.tracker import MLflowTracker, NullTracker

__all__ = ["MLflowTracker", "NullTracker"]
