"""MLflow tracking: run lifecycle, params/metrics, lineage, model logging and the registry.

Knows nothing of tasks or models: a model arrives as a package (packaging.py). Implements the
`Tracker` protocol of runtime/tracker.py. mlflow itself is imported only when a tracker is built.
"""

from trainpipe.tracking.mlflow_tracker import MLflowTracker, NullTracker

__all__ = ["MLflowTracker", "NullTracker"]
