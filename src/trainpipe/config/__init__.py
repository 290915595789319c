"""Config: where the Hydra tree lives, custom resolvers, composition and validation.

Nothing in this package imports torch, lightning, mlflow or datasets.
"""

from trainpipe.config import resolvers  # noqa: F401  (registers ${run_identity:} on import)
from trainpipe.config.locate import config_dir
from trainpipe.config.validate import validate

__all__ = ["config_dir", "validate"]
