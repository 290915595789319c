"""Image classification behind the task interface (tasks/base.py): pictures → cached, resized
pixels → a torchvision ResNet → a registered model (safetensors + JSON spec, pickle-free).
Imports no torch at module level (tasks/base.py): `validate` runs before torch is imported.
"""

from __future__ import annotations

import base64
import importlib.util
import io
from pathlib import Path
from typing import Any

from trainpipe.console import first_of
from trainpipe.errors import ConfigError, DataError
from trainpipe.packaging import (
    SPEC_FILE,
    WEIGHTS_FILE,
    ModelPackage,
    finish_package,
    write_weights_and_spec,
)
from trainpipe.tasks.base import DataDescription, Objective

PYFUNC_MODULE = "trainpipe.tasks.images.pyfunc"
# the model config's `_target_` (configs/model/resnet.yaml)
BUILDER = "trainpipe.tasks.images.task.build_image_module"
# model=cnn's builder: its small CNN trains on pictures too (the net is built here, not there);
# the same builder's other nets (model=mlp) take feature rows, not pictures
CNN_BUILDER = "trainpipe.tasks.tabular.task.build_feature_module"
PICTURE_NETS = ("trainpipe.tasks.tabular.nets.CNN",)
KIND = "image"
FSDP2_STRATEGY = "FSDP2Strategy"
MAX_CLASSES_SHOWN = 20


class ImageTask:
    name = "image_classification"
    objective = Objective("val/acc", "max")
    capabilities: frozenset[str] = frozenset()
    model_builders = frozenset({BUILDER, CNN_BUILDER})
    metric_directions = {"loss": "min", "acc": "max", "f1": "max", "top5": "max"}

    @staticmethod
    def trains(model: Any) -> bool:
        """Whether a `model` config section is one for pictures: a ResNet, or the tables'
        builder with a picture net (model=cnn; its model=mlp takes feature rows)."""
        if model.get("_target_") == CNN_BUILDER:
            return (model.get("net") or {}).get("_target_") in PICTURE_NETS
        return model.get("_target_") == BUILDER

    def validate(self, conf: dict[str, Any]) -> None:
        model, data = conf["model"], conf["data"]
        if data["kind"] != KIND:
            raise ConfigError("task", f"task {self.name} trains on images; data is {data['kind']}")
        if not self.trains(model):
            raise ConfigError(
                "model",
                f"model={model.get('name')} is not a model for images; task {self.name} trains "
                "model=resnet or model=cnn",
            )
        if importlib.util.find_spec("torchvision") is None:
            raise ConfigError(
                "model", "model=resnet needs torchvision: pip install 'trainpipe[images]'"
            )
        if data["source"] == "images" and not isinstance(data.get("path"), str):
            raise ConfigError(
                "data.path", f"must be one folder of class folders, got {data['path']!r}"
            )
        strategy = conf["trainer"].get("strategy")
        target = strategy.get("_target_", "") if isinstance(strategy, dict) else ""
        if str(target).endswith(FSDP2_STRATEGY):
            raise ConfigError(
                "trainer",
                "trainer=fsdp2 shards GPT models; model=resnet trains with trainer=gpu or ddp",
            )
        if model.get("net") is not None and model.get("weights"):
            raise ConfigError(
                "model.weights", "fine-tuning from a state dict needs model=resnet, not model=cnn"
            )
        if model.get("freeze_backbone") and not model.get("weights"):
            raise ConfigError(
                "model.freeze_backbone",
                "a frozen backbone needs trained weights: set model.weights=PATH",
            )

    def describe_data(self, spec: dict[str, Any]) -> DataDescription:
        classes = spec["classes"]
        columns = [
            {"name": spec["image_column"], "type": "binary", "required": True},
            {"name": spec["target_name"], "type": "string", "required": True},
        ]
        size = spec["image_size"]
        facts = {
            "features": f"RGB images {size}x{size} (column {spec['image_column']!r})",
            "target": spec["target_name"],
            "classes": f"{len(classes)}: {first_of(classes, MAX_CLASSES_SHOWN)}",
            "normalisation": "mean "
            + ", ".join(f"{v:.3f}" for v in spec["mean"])
            + "; std "
            + ", ".join(f"{v:.3f}" for v in spec["std"]),
        }
        left_out = spec.get("skipped_images", 0), spec.get("ignored_files", 0)
        if any(left_out):
            facts["left out"] = (
                f"{left_out[0]} undecodable image(s) (data.skip_bad_images), "
                f"{left_out[1]} non-image file(s)"
            )
        return DataDescription(columns, facts)

    def prepare(self, conf: dict[str, Any]) -> Any:
        from trainpipe.tasks.images.data import prepare_images

        if conf["data"]["kind"] != KIND:
            raise ConfigError(
                "task", f"task {self.name} trains on images; data is {conf['data']['kind']}"
            )
        prepared = prepare_images(conf["data"])
        model = conf.get("model") or {}
        if model.get("weights"):  # before anything is written: a misfit stops the job here
            from trainpipe.tasks.images.model import build_net, load_backbone

            load_backbone(
                build_net(self.full_spec(self.data_spec(prepared), model)), model["weights"]
            )
        return prepared

    def data_spec(self, prepared: Any) -> dict[str, Any]:
        return {
            "task": self.name,
            "classes": prepared.classes,
            "num_outputs": len(prepared.classes),
            "image_size": prepared.image_size,
            "mean": prepared.mean,
            "std": prepared.std,
            "image_column": prepared.image_column,
            "target_name": prepared.target_name,
            # what the data had besides the training pictures (the model card's data facts)
            "skipped_images": prepared.skipped_images,
            "ignored_files": prepared.ignored_files,
        }

    @staticmethod
    def full_spec(spec: dict[str, Any], model_cfg: Any) -> dict[str, Any]:
        from trainpipe.tasks.images.model import uses_small_stem

        if model_cfg.get("net") is not None:  # model=cnn: the net's `_target_` + its arguments
            from trainpipe.config.targets import instantiate_checked
            from trainpipe.tasks.tabular.model import net_spec

            net = net_spec(instantiate_checked(model_cfg["net"], "model.net"))
            return {**spec, "net": net, "name": model_cfg["name"]}
        net = {
            "depth": int(model_cfg["depth"]),
            "small_stem": uses_small_stem(model_cfg["stem"], spec["image_size"]),
            "stem_pool": bool(model_cfg["stem_pool"]),
            "freeze_backbone": bool(model_cfg["freeze_backbone"]),
            "backbone_lr_scale": float(model_cfg["backbone_lr_scale"]),
        }
        return {**spec, "net": net, "name": model_cfg["name"]}

    def build_module(self, model_cfg: Any, spec: dict[str, Any]) -> Any:
        if not self.trains(model_cfg):
            raise ConfigError("model", f"model={model_cfg.get('name')} is not a model for images")
        return build_image_module(model_cfg, spec, self)

    def datamodule(self, prepared: Any, data_conf: dict[str, Any]) -> Any:
        from trainpipe.data.datamodule import PreparedDataModule
        from trainpipe.data.loader import batch_loader
        from trainpipe.tasks.images.transforms import split_transforms

        transforms = split_transforms(data_conf, prepared.image_size)
        return PreparedDataModule(batch_loader, prepared.splits, data_conf, transforms=transforms)

    def callbacks(self, conf: dict[str, Any], output_dir: Path, tracker: Any) -> list[Any]:
        return []

    def trainer_defaults(self, conf: dict[str, Any]) -> dict[str, Any]:
        return {}

    def write_package(self, module: Any, prepared: Any, directory: Path) -> ModelPackage:
        import pandas as pd

        from trainpipe.tasks.images.predictor import ImagePredictor

        spec = module.spec
        write_weights_and_spec(directory, module.model.state_dict(), spec)
        # the example is what a REST client sends: base64 PNGs in the image column
        example = pd.DataFrame(
            {spec["image_column"]: [png_base64(p) for p in prepared.example_images()]}
        )
        return finish_package(
            directory,
            task=self.name,
            pyfunc_module=PYFUNC_MODULE,
            example=example,
            predictions=ImagePredictor(spec, module.model.cpu()).predict(example),
            params={"output": "label"},
            metadata={
                "classes": spec["classes"],
                "image_size": spec["image_size"],
                "image_column": spec["image_column"],
            },
        )

    def load_predictor(self, source: Path | dict[str, Any]) -> Any:
        from trainpipe.tasks.images.predictor import ImagePredictor

        if isinstance(source, dict):  # a checkpoint, already loaded weights-only
            return ImagePredictor.from_checkpoint(source)
        return ImagePredictor.from_files(Path(source) / SPEC_FILE, Path(source) / WEIGHTS_FILE)

    def check_compatible(self, predictor: Any, prepared: Any) -> None:
        spec = predictor.spec
        if spec["classes"] != prepared.classes:
            raise DataError(
                f"data.path: the model's classes {spec['classes']} differ from the data's "
                f"{prepared.classes}"
            )
        if spec["image_size"] != prepared.image_size:
            raise DataError(
                f"data.image_size: the model was trained on {spec['image_size']}px images, "
                f"the data is prepared at {prepared.image_size}px"
            )

    def evaluate(
        self, predictor: Any, prepared: Any, batch_size: int, device: str
    ) -> dict[str, float]:
        from trainpipe.tasks.images.module import ImageHead

        head = ImageHead()
        outputs, targets = test_outputs(predictor.model, prepared, batch_size, device)
        metrics = {"test/loss": float(head.loss(predictor.model, outputs, targets))}
        for name, metric in head.metrics(predictor.spec).items():
            metric.update(outputs, targets)
            metrics[f"test/{name}"] = float(metric.compute())
        return metrics

    def figures(self, predictor: Any, prepared: Any) -> dict[str, Any]:
        """The confusion matrix and a grid of misclassified test pictures."""
        from trainpipe.tasks.images.plots import misclassified_grid
        from trainpipe.tasks.tabular.plots import confusion_matrix

        outputs, targets = test_outputs(predictor.model, prepared, batch_size=256, device="cpu")
        predicted = outputs.argmax(dim=-1)
        classes = predictor.spec["classes"]
        return {
            "confusion_matrix": confusion_matrix(targets, predicted, classes),
            "misclassified": misclassified_grid(prepared, targets, predicted, classes),
        }


def build_image_module(model_cfg: Any, spec: dict[str, Any], task: ImageTask) -> Any:
    """The builder `model=resnet` names (`_target_`): the net from the spec (and, when
    fine-tuning, the backbone from `model.weights`), optimizer + schedule from the config."""
    from trainpipe.config.targets import instantiate_checked
    from trainpipe.tasks.images.model import build_net, load_backbone
    from trainpipe.tasks.images.module import ImageModule

    full_spec = task.full_spec(spec, model_cfg)
    net = build_net(full_spec)
    if model_cfg.get("weights"):
        load_backbone(net, model_cfg["weights"])
    optimizer = instantiate_checked(model_cfg.optimizer, "model.optimizer")
    scheduler = model_cfg.get("scheduler")
    if scheduler is not None:
        scheduler = instantiate_checked(scheduler, "model.scheduler")
    return ImageModule(
        full_spec, optimizer, scheduler, net, compile=model_cfg.get("compile", False)
    )


def test_outputs(model: Any, prepared: Any, batch_size: int, device: str) -> tuple[Any, Any]:
    """(logits, targets) over the whole test split, in its order, on the CPU."""
    import torch

    from trainpipe.data.loader import batch_loader
    from trainpipe.tasks.images.transforms import ImageTransform

    plain = ImageTransform(prepared.image_size, augment=False)
    model = model.to(device).eval()
    outputs, targets = [], []
    with torch.inference_mode():
        for images, target in batch_loader(
            prepared.splits["test"], batch_size, shuffle=False, seed=0, transform=plain
        ):
            outputs.append(model(images.to(device)).float().cpu())
            targets.append(target)
    model.cpu()
    return torch.cat(outputs), torch.cat(targets)


def png_base64(pixels: Any) -> str:
    """uint8 HxWx3 → a base64 PNG string: an image as JSON carries it."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
