"""What classification and regression share: a table → FeatureModel → head, packaged the same way.

`TabularTask` implements the task interface (tasks/base.py) for any head; the classification and
regression packages each make one with their own name, objective, target encoding and head.
Imports no torch at module level (tasks/base.py).
"""

from __future__ import annotations

from dataclasses import dataclass
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

PYFUNC_MODULE = "trainpipe.tasks.tabular.pyfunc"
# the model configs' `_target_`: the one builder of a table model (configs/model/mlp.yaml, cnn.yaml)
BUILDER = "trainpipe.tasks.tabular.task.build_feature_module"
FSDP2_STRATEGY = "FSDP2Strategy"
TARGET_COLUMN = "__target__"  # the encoded target beside the raw columns (data/tables.py)
MAX_NAMES_SHOWN = 12  # feature names listed on the model card; the rest are counted


@dataclass(frozen=True)
class TabularTask:
    name: str
    objective: Objective
    target_kind: str  # how the data layer encodes the target: classes | values
    head: Any  # tasks/tabular/module.py Head
    capabilities: frozenset[str] = frozenset()
    model_builders: frozenset[str] = frozenset({BUILDER})

    @property
    def metric_directions(self) -> dict[str, str]:
        return {"loss": "min", **self.head.directions}

    def validate(self, conf: dict[str, Any]) -> None:
        model, data = conf["model"], conf["data"]
        self._check_builder(model)
        if data["kind"] != "table":
            raise ConfigError("task", f"task {self.name} trains on tables; data is {data['kind']}")
        strategy = conf["trainer"].get("strategy")
        target = strategy.get("_target_", "") if isinstance(strategy, dict) else ""
        if str(target).endswith(FSDP2_STRATEGY):
            raise ConfigError(
                "trainer",
                f"trainer=fsdp2 shards GPT models (model=gpt); model={model.get('name')} trains with "
                "trainer=gpu or trainer=ddp",
            )
        net_target = (model.get("net") or {}).get("_target_", "")
        if net_target.endswith(".CNN") and data.get("image_shape") is None:
            raise ConfigError(
                "data.image_shape",
                "model.net CNN needs image-shaped input; set data.image_shape=[C,H,W]",
            )

    def _check_builder(self, model: Any) -> None:
        if model.get("_target_") not in self.model_builders:
            raise ConfigError(
                "model",
                f"model={model.get('name')} is not a model for tables; task {self.name} trains model=mlp or model=cnn",
            )

    def describe_data(self, spec: dict[str, Any]) -> DataDescription:
        names = spec["feature_names"]
        kinds = column_types(spec)
        columns = [{"name": n, "type": kinds.get(n, "double"), "required": True} for n in names]
        classes = spec.get("class_values")
        if classes is None:
            target_type = "double"
        else:
            target_type = "long" if all(isinstance(c, int) for c in classes) else "string"
        columns.append({"name": spec["target_name"], "type": target_type, "required": True})
        facts = {
            "features": f"{len(names)}: {first_of(names, MAX_NAMES_SHOWN)}",
            "target": spec["target_name"],
        }
        if classes is not None:
            facts["classes"] = ", ".join(str(c) for c in classes)
        if "columns" in spec:
            from trainpipe.data.columns import describe_plan

            facts["columns"] = describe_plan(spec["columns"])
        return DataDescription(columns, facts)

    def prepare(self, conf: dict[str, Any]) -> Any:
        from trainpipe.data.tables import prepare_table

        if conf["data"]["kind"] != "table":
            raise ConfigError(
                "task", f"task {self.name} trains on tables; data is {conf['data']['kind']}"
            )
        return prepare_table(conf["data"], self.target_kind)

    def data_spec(self, prepared: Any) -> dict[str, Any]:
        from trainpipe.data.columns import embedding_sizes

        spec: dict[str, Any] = {
            "task": self.name,
            "feature_names": prepared.feature_names,
            # what each input column is and its training statistics (data/columns.py)
            "columns": prepared.plan,
            "embeddings": embedding_sizes(prepared.plan),
            "input_shape": list(prepared.input_shape),
            "feature_mean": prepared.feature_mean.tolist(),
            "feature_std": prepared.feature_std.tolist(),
            "target_name": prepared.target_name,
        }
        if prepared.class_values is not None:
            return {
                **spec,
                "num_outputs": len(prepared.class_values),
                "class_values": prepared.class_values,
                "class_weights": prepared.class_weights,
            }
        return {
            **spec,
            "num_outputs": 1,
            "target_mean": prepared.target_mean,
            "target_std": prepared.target_std,
        }

    def build_module(self, model_cfg: Any, spec: dict[str, Any]) -> Any:
        self._check_builder(model_cfg)
        return build_feature_module(model_cfg, spec, self)

    def datamodule(self, prepared: Any, data_conf: dict[str, Any]) -> Any:
        from trainpipe.data.datamodule import PreparedDataModule
        from trainpipe.data.loader import batch_loader

        return PreparedDataModule(batch_loader, prepared.splits, data_conf)

    def callbacks(self, conf: dict[str, Any], output_dir: Path, tracker: Any) -> list[Any]:
        return []

    def trainer_defaults(self, conf: dict[str, Any]) -> dict[str, Any]:
        return {}  # epochs are short: validate at every epoch end, as configured

    def write_package(self, module: Any, prepared: Any, directory: Path) -> ModelPackage:
        from trainpipe.tasks.tabular.predictor import TabularPredictor

        spec = module.spec
        write_weights_and_spec(directory, module.model.state_dict(), spec)
        example = prepared.example_frame()
        return finish_package(
            directory,
            task=self.name,
            pyfunc_module=PYFUNC_MODULE,
            example=example,
            predictions=TabularPredictor(spec, module.model).predict(example),
            params={"output": "label"},
            metadata={
                "feature_names": spec["feature_names"],
                "target": spec["target_name"],
                **({"class_values": spec["class_values"]} if "class_values" in spec else {}),
            },
        )

    def load_predictor(self, source: Path | dict[str, Any]) -> Any:
        from trainpipe.tasks.tabular.predictor import TabularPredictor

        if isinstance(source, dict):  # a checkpoint, already loaded weights-only
            return TabularPredictor.from_checkpoint(source)
        return TabularPredictor.from_files(Path(source) / SPEC_FILE, Path(source) / WEIGHTS_FILE)

    def check_compatible(self, predictor: Any, prepared: Any) -> None:
        spec = predictor.spec
        if spec["feature_names"] != prepared.feature_names:
            raise DataError(
                f"data.features: the model was trained on columns {spec['feature_names']}, "
                f"the data has {prepared.feature_names}"
            )
        if spec.get("class_values") is not None and spec["class_values"] != prepared.class_values:
            raise DataError(
                f"data.target: the model's classes {spec['class_values']} differ from the data's "
                f"{prepared.class_values}"
            )

    def evaluate(
        self, predictor: Any, prepared: Any, batch_size: int, device: str
    ) -> dict[str, float]:
        from trainpipe.tasks.tabular.module import class_metric_objects, per_class

        model = predictor.model
        outputs, targets = _test_outputs(predictor, prepared, batch_size, device)
        metrics = {"test/loss": float(self.head.loss(model, outputs, targets))}
        predictions, truth = self.head.metric_inputs(model, outputs, targets)
        for name, metric in self.head.metrics(predictor.spec).items():
            metric.update(predictions, truth)
            metrics[f"test/{name}"] = float(metric.compute())
        per_class_metrics = class_metric_objects(self.head, predictor.spec)
        for metric in per_class_metrics.values():
            metric.update(predictions, truth)
        return {
            **metrics,
            **per_class(predictor.spec.get("class_values") or [], per_class_metrics, "test"),
        }

    def figures(self, predictor: Any, prepared: Any) -> dict[str, Any]:
        """Classification: the confusion matrix; regression: predicted against true values."""
        from trainpipe.tasks.tabular import plots

        model = predictor.model
        outputs, targets = _test_outputs(predictor, prepared, batch_size=1024, device="cpu")
        predictions, truth = self.head.metric_inputs(model, outputs, targets)
        classes = predictor.spec.get("class_values")
        if classes is not None:
            labels = [str(c) for c in classes]
            return {"confusion_matrix": plots.confusion_matrix(truth, predictions, labels)}
        target = predictor.spec["target_name"]
        return {"predicted_vs_true": plots.predicted_vs_true(truth, predictions, target)}


def column_types(spec: dict[str, Any]) -> dict[str, str]:
    """MLflow dataset column types of the input columns (numbers are doubles)."""
    plan = spec.get("columns") or {}
    types = {c["name"]: "string" for c in plan.get("categorical", [])}
    types.update({c["name"]: "datetime" for c in plan.get("dates", [])})
    return types


def build_feature_module(model_cfg: Any, spec: dict[str, Any], task: TabularTask) -> Any:
    """The builder a table model's config names (`_target_`): net + optimizer + schedule from the
    `model` section, the loss and metrics from the task's head."""
    from trainpipe.config.targets import instantiate_checked
    from trainpipe.tasks.tabular.model import net_spec
    from trainpipe.tasks.tabular.module import TabularModule

    net = instantiate_checked(model_cfg.net, "model.net")
    full_spec = {**spec, "net": net_spec(net), "name": model_cfg.name}
    optimizer = instantiate_checked(model_cfg.optimizer, "model.optimizer")
    scheduler = model_cfg.get("scheduler")
    if scheduler is not None:
        scheduler = instantiate_checked(scheduler, "model.scheduler")
    return TabularModule(full_spec, task.head, optimizer, scheduler)


def _test_outputs(predictor: Any, prepared: Any, batch_size: int, device: str) -> tuple[Any, Any]:
    """(model outputs, targets) over the whole test split, in its order, on the CPU.

    The rows are encoded with the MODEL's column plan: the prepared split was encoded with the
    plan learned on this data's own training split, which differs when the model was trained on
    other data (`trainpipe eval` of new rows, the promotion gate scoring two versions)."""
    import torch

    from trainpipe.data.loader import batch_loader

    model = predictor.model.to(device).eval()
    plan = predictor.spec.get("columns")
    if plan is not None and prepared.raw_splits is not None and plan != prepared.plan:
        raw = prepared.raw_splits["test"]
        try:
            rows = predictor.rows(raw.select_columns(predictor.feature_names).to_pandas())
        except ValueError as err:
            raise DataError(f"data.features: {err}") from None
        batches: Any = zip(
            torch.from_numpy(rows).split(batch_size),
            torch.as_tensor(raw.with_format("numpy")[TARGET_COLUMN]).split(batch_size),
            strict=True,
        )
    else:
        batches = batch_loader(prepared.splits["test"], batch_size, shuffle=False, seed=0)
    outputs, targets = [], []
    with torch.inference_mode():
        for features, target in batches:
            outputs.append(model(features.to(device)).float().cpu())
            targets.append(target)
    model.cpu()
    return torch.cat(outputs), torch.cat(targets)
