"""Plain nn.Modules. They know nothing of Lightning, MLflow or Hydra."""

from trainpipe.models.nets.classifier import FeatureClassifier, build_net
from trainpipe.models.nets.cnn import CNN
from trainpipe.models.nets.mlp import MLP

__all__ = ["CNN", "MLP", "FeatureClassifier", "build_net"]
