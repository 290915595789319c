"""trainpipe: Hydra-configured, Lightning-run, MLflow-tracked training on Hugging Face datasets.

Importing the package is cheap on purpose: torch, lightning, mlflow and datasets are imported
only by the stages that need them, so `trainpipe --help` and config errors stay fast.
"""

__version__ = "0.1.0"
