"""`trainpipe eval`: score a checkpoint or a registered model on the test split; log an evaluation run.

`model_uri` is a checkpoint path (loaded weights-only), `models:/NAME/VERSION` or `models:/NAME@ALIAS`
(loaded through MLflow's pyfunc flavour, pickle-free).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from trainpipe.errors import ConfigError, DataError
from trainpipe.report import print_summary, ui_hint
from trainpipe.tracking.lineage import command_line, git_tags, versions
from trainpipe.tracking.params import flatten

log = logging.getLogger(__name__)


def load_classifier(model_uri: str, tracking_uri: str | None = None) -> tuple[Any, dict[str, Any]]:
    """(FeatureClassifier in eval mode, its spec) from a checkpoint path or a registry URI."""
    if model_uri.startswith("models:/") or model_uri.startswith("runs:/"):
        import mlflow

        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)

        try:
            wrapper = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
        except Exception as err:
            raise ConfigError(
                "model_uri",
                f"cannot load {model_uri!r} from {mlflow.get_tracking_uri()}: {str(err).splitlines()[0]}",
            ) from None
        spec = {"feature_names": wrapper.feature_names, "class_names": wrapper.class_names}
        return wrapper.model, spec
    from trainpipe.models.nets import FeatureClassifier, build_net
    from trainpipe.runtime.checkpoint_io import load_checkpoint_file

    path = Path(model_uri)
    if not path.is_file():
        raise ConfigError(
            "model_uri", f"no checkpoint file at {model_uri!r} (and not a models:/ URI)"
        )
    checkpoint = load_checkpoint_file(path)
    spec = checkpoint.get("trainpipe_model")
    if spec is None:
        raise ConfigError(
            "model_uri", f"{model_uri!r} is not a trainpipe checkpoint (no model spec)"
        )
    classifier = FeatureClassifier(
        build_net(spec["net"], spec["input_shape"], spec["num_classes"]),
        spec["input_shape"],
        spec["num_features"],
    )
    prefix = "classifier."
    classifier.load_state_dict(
        {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    )
    return classifier.eval(), spec


def evaluate(classifier: Any, split: Any, batch_size: int, device: str) -> dict[str, float]:
    """Loss, accuracy and macro F1 of `classifier` over a prepared split."""
    import torch
    import torch.nn.functional as F
    from torchmetrics.functional.classification import multiclass_f1_score

    from trainpipe.data.loader import batch_loader

    classifier = classifier.to(device).eval()
    logits, labels = [], []
    with torch.inference_mode():
        for features, target in batch_loader(split, batch_size=batch_size, shuffle=False, seed=0):
            logits.append(classifier(features.to(device)).float().cpu())
            labels.append(target)
    all_logits, all_labels = torch.cat(logits), torch.cat(labels)
    num_classes = all_logits.shape[1]
    return {
        "test/loss": F.cross_entropy(all_logits, all_labels).item(),
        "test/acc": (all_logits.argmax(-1) == all_labels).float().mean().item(),
        "test/f1": multiclass_f1_score(
            all_logits.argmax(-1), all_labels, num_classes, average="macro"
        ).item(),
    }


def run(cfg: DictConfig, conf: dict[str, Any]) -> float:
    import torch

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    device = (
        conf["device"]
        if conf["device"] != "auto"
        else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    classifier, spec = load_classifier(conf["model_uri"], conf["logger"].get("tracking_uri"))
    data = instantiate(cfg.data).prepared
    if list(spec["class_names"]) != data.class_names:
        raise DataError(
            f"data.target: the model's classes {spec['class_names']} differ from the data's {data.class_names}"
        )
    if list(spec.get("feature_names") or data.feature_names) != data.feature_names:
        raise DataError(
            f"data.features: the model was trained on columns {spec['feature_names']}, the data has {data.feature_names}"
        )
    metrics = evaluate(classifier, data.splits["test"], conf["data"]["batch_size"], device)

    tracker = instantiate(cfg.logger)
    tags = {
        "trainpipe.command": command_line(),
        "trainpipe.model_uri": conf["model_uri"],
        "trainpipe.data.digest": data.digest,
        **git_tags(),
        **versions(),
    }
    run_id = tracker.start(output_dir.name, tags, journal_dir=output_dir / "tracking")
    tracker.log_params(flatten(conf))
    tracker.log_metrics(metrics, step=0)
    tracker.finish("FINISHED")
    print_summary(
        f"evaluated {conf['model_uri']}",
        {
            "run id": run_id,
            **{k: round(v, 4) for k, v in metrics.items()},
            "look at it": ui_hint(tracker.tracking_uri),
        },
    )
    return metrics["test/acc"]
