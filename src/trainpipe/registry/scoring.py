"""Score a registered model on held-out data: the test split of the data it was trained on.

The promotion gate scores the challenger and the champion on the same prepared data (the
challenger's test split); the pipeline calls `score` for one model. The data is prepared by the
model's task from the config recorded with the model (its run's config.yaml), so the split is the
one the model was trained with (same data, same seed → same `split_digest`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from trainpipe.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scores:
    """Test metrics of one model, and which data they were measured on."""

    metrics: dict[str, float]  # test/acc, test/loss, … (the task's evaluate)
    split_digest: str  # the train/val/test splits the test split came from
    data_digest: str  # the content of the source data


@dataclass
class HeldOut:
    """A loaded model with the held-out data it is scored on."""

    task: Any  # trainpipe.tasks.Task
    predictor: Any
    trained_conf: dict[str, Any] | None  # the resolved config the model was trained with
    prepared: Any  # the task's prepared data (its test split is scored)


def load_held_out(
    model_uri: str, tracking_uri: str | None, data_conf: dict[str, Any] | None = None
) -> HeldOut:
    """Load `model_uri` and prepare its test data: the data it was trained on, or the resolved
    `data` section `data_conf` (the rest of the recorded config — seed, tokenizer — still applies)."""
    from trainpipe.loading import load_model
    from trainpipe.tasks import get_task

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # as registration does
    predictor, trained_conf = load_model(model_uri, tracking_uri, key="model")
    task = get_task(predictor.spec["task"])
    if data_conf is None and trained_conf is None:
        raise ConfigError(
            "data", f"{model_uri}: its training config is not recorded; give the data to score on"
        )
    conf = dict(trained_conf or {})
    if data_conf is not None:
        conf["data"] = data_conf
    return HeldOut(task, predictor, trained_conf, task.prepare(conf))


def score_held_out(
    held_out: HeldOut, predictor: Any = None, batch_size: int = 256, device: str = "cpu"
) -> Scores:
    """Test metrics of `predictor` (default: the held-out model itself) on `held_out`'s data;
    DataError if that model was trained on data of another shape (columns, classes, tokens)."""
    task, prepared = held_out.task, held_out.prepared
    predictor = held_out.predictor if predictor is None else predictor
    task.check_compatible(predictor, prepared)
    metrics = task.evaluate(predictor, prepared, batch_size, device)
    shown = ", ".join(f"{k} {float(v):.4g}" for k, v in sorted(metrics.items()))
    log.info("scored on the test split (splits %s): %s", prepared.split_digest, shown)
    return Scores({k: float(v) for k, v in metrics.items()}, prepared.split_digest, prepared.digest)


def score(
    model_uri: str,
    tracking_uri: str | None,
    data_conf: dict[str, Any] | None = None,
    batch_size: int = 256,
    device: str = "cpu",
) -> Scores:
    """Test metrics of a registered (or logged) model on the test split of its training data,
    or of `data_conf` (a resolved `data` config section)."""
    return score_held_out(
        load_held_out(model_uri, tracking_uri, data_conf), None, batch_size, device
    )
