"""Load a trained model — a checkpoint file or a registered `models:/…` / `runs:/…` URI — as its
task's predictor, with the config it was trained with (for `eval`, `generate`, `export`, …)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainpipe.errors import ConfigError

REGISTRY_SCHEMES = ("models:/", "runs:/")


def load_model(
    uri: str, tracking_uri: str | None = None, key: str = "model_uri"
) -> tuple[Any, dict[str, Any] | None]:
    """(predictor, the resolved config it was trained with, if known). Errors name `key`."""
    if uri.startswith(REGISTRY_SCHEMES):
        from trainpipe.tracking.model_versions import load_registered, training_config

        try:
            python_model = load_registered(uri, tracking_uri)
            trained = training_config(uri, tracking_uri)
        except Exception as err:
            raise ConfigError(key, f"cannot load {uri!r}: {str(err).splitlines()[0]}") from None
        if not hasattr(python_model, "predictor"):
            raise ConfigError(key, f"{uri!r} is not a trainpipe model")
        return python_model.predictor, trained
    from trainpipe.callbacks.run_identity import CONFIG_KEY
    from trainpipe.runtime.checkpoint_io import load_checkpoint_file
    from trainpipe.tasks import get_task

    path = Path(uri)
    if not path.exists():  # a file, or a directory of shards (trainer=fsdp2)
        raise ConfigError(key, f"no checkpoint at {uri!r} (and not a models:/ URI)")
    try:
        checkpoint = load_checkpoint_file(path)
    except Exception as err:
        raise ConfigError(key, f"cannot read {uri!r}: {str(err).splitlines()[0]}") from None
    spec = checkpoint.get("trainpipe_model")
    if spec is None:
        raise ConfigError(key, f"{uri!r} is not a trainpipe checkpoint (no model spec)")
    return get_task(spec["task"]).load_predictor(checkpoint), checkpoint.get(CONFIG_KEY) or None
