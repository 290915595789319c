"""The interface between the stages (train, eval, pipeline) and a task (docs/architecture.md).

A task owns everything that depends on what is being learned: how prepared data becomes a data
spec, the LightningModule built from that spec, its metrics and default objective, and the
deployable model (package, predictor, MLflow pyfunc). The stages call only what is below; they
never import a task's modules, and never ask which task they hold: what differs between tasks is
a member here (config rules, capabilities, how the data is described, metric directions). Tasks
are looked up by name in `trainpipe.tasks`.

A task object and the module defining it import no torch (torch-heavy parts are imported inside
the methods that need them): `validate` runs on a config before torch is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from trainpipe.packaging import ModelPackage


@dataclass(frozen=True)
class Objective:
    """What picks the best checkpoint and what sweeps optimise."""

    metric: str  # e.g. "val/acc"
    mode: str  # "max" | "min"
    # what the registry gate compares (same direction as `metric`); default: `metric` on the
    # test split
    gate: str | None = None

    @property
    def gate_metric(self) -> str:
        return self.gate or self.test_metric

    @property
    def test_metric(self) -> str:
        return test_metric(self.metric)


def test_metric(metric: str) -> str:
    """The test-split name of a validation metric: `val/acc` → `test/acc` (the same measure of
    the same weights, on the test split)."""
    stage, _, name = metric.partition("/")
    return f"test/{name}" if stage == "val" else metric


# what a task can do besides training and evaluating (`Task.capabilities`)
GENERATE = "generate"  # its predictor continues text, `continue_text` (trainpipe generate)
EXPORT = "export"  # `Task.export` writes its model in another format (trainpipe export)
ESTIMATE = "estimate"  # `Task.model_shape` sizes its model from the config (trainpipe estimate)


@dataclass(frozen=True)
class DataDescription:
    """How a task's data is described to people and to MLflow, from its data spec."""

    columns: list[dict[str, Any]]  # MLflow column specs: {"name", "type", "required"}
    facts: dict[str, str] = field(default_factory=dict)  # model card rows: "features", "target", …


class Prepared(Protocol):
    """Data after the data layer: split, encoded, cached. Each task has its own kind."""

    digest: str  # content of the source data (same files → same digest)
    split_digest: str  # the train/val/test splits as the model sees them
    source: str  # what the data is, for people (a path, a dataset name)

    def split_sizes(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class ScoreOptions:
    """How `trainpipe predict` asks a predictor to score a batch of rows (configs/predict.yaml).
    A predictor reads what applies to it: a classifier `probabilities`, a language model the
    sampling options; the rest it ignores."""

    probabilities: bool = False  # a classifier adds one column per class
    batch_size: int = 131072  # rows per forward pass
    device: str = "cpu"
    # a language model's max_new_tokens, temperature, top_k, seed
    sampling: dict[str, Any] = field(default_factory=dict)
    # rows it cannot read (NaN, text in a number column, an image that does not decode) get null
    # outputs instead of stopping the job; the scorer counts them
    skip_bad: bool = False
    # where relative file paths in the input are resolved from (a table's folder, as training
    # resolves an image table's paths); None: the working directory
    base_dir: str | None = None


class Predictor(Protocol):
    """A trained model ready to predict and be scored (from a checkpoint or a registered model)."""

    spec: dict[str, Any]
    # the kind of data it was trained on (`data.kind`: table, image, text): a reader that is not
    # a table (a folder of pictures) hands its rows only to a model of its kind
    data_kind: str

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any: ...

    # -- batch scoring (trainpipe predict): what goes in and what comes out is the task's ---
    def input_columns(self) -> list[str]:
        """The columns of a table it reads, matched by name (the batch scorer names the missing
        ones before scoring anything)."""
        ...

    def output_columns(self, options: ScoreOptions) -> list[str]:
        """The names of the columns `score` returns (kept input columns must not collide)."""
        ...

    def score(self, frame: Any, options: ScoreOptions) -> dict[str, Any]:
        """The output columns for the rows of a DataFrame, by name, each a sequence as long as
        the frame — the same values `predict` gives for those rows. DataError for input it
        cannot score (naming the column); with `options.skip_bad`, None in every output column
        of such a row instead."""
        ...


class Task(Protocol):
    name: str
    objective: Objective  # the default `optimized_metric` / `optimized_mode`
    capabilities: frozenset[str]  # GENERATE, EXPORT, ESTIMATE: what the commands may ask of it
    # the `_target_`s of the model configs it trains: a model config names its builder, a
    # function (model config, data spec, task) → LightningModule
    model_builders: frozenset[str]
    # whether larger is better, by metric name without its stage (`acc` → max), for every metric
    # the task logs: the promotion gate reads it for a metric that is not the objective
    metric_directions: dict[str, str]

    def validate(self, conf: dict[str, Any]) -> None:
        """ConfigError for a resolved job config this task cannot train: rules that depend on
        the task or its model (`model._target_` names the model's builder). No torch, no data."""
        ...

    def describe_data(self, spec: dict[str, Any]) -> DataDescription:
        """The data of a data spec, for the run's MLflow dataset and the model card."""
        ...

    def prepare(self, conf: dict[str, Any]) -> Prepared:
        """Load, check and encode the data of a resolved job config (DataError on bad data)."""
        ...

    def data_spec(self, prepared: Prepared) -> dict[str, Any]:
        """Everything the model needs to know about the data (shapes, names, classes, scaling)."""
        ...

    def build_module(self, model_cfg: Any, spec: dict[str, Any]) -> Any:
        """The LightningModule for the `model` config section, built from the data spec."""
        ...

    def datamodule(self, prepared: Prepared, data_conf: dict[str, Any]) -> Any:
        """The LightningDataModule serving the prepared splits."""
        ...

    def callbacks(self, conf: dict[str, Any], output_dir: Path, tracker: Any) -> list[Any]:
        """Lightning callbacks the task adds to every training job (e.g. text samples)."""
        ...

    def trainer_defaults(self, conf: dict[str, Any]) -> dict[str, Any]:
        """Trainer settings the task decides when the config leaves them unset, as
        {dotted key: value} (e.g. how often a language model validates); {} if none."""
        ...

    def write_package(self, module: Any, prepared: Prepared, directory: Path) -> ModelPackage:
        """The deployable model (weights + spec + example), pickle-free, in `directory`."""
        ...

    def load_predictor(self, source: Path | dict[str, Any]) -> Predictor:
        """A predictor from a model package directory or a loaded (weights-only) checkpoint."""
        ...

    def check_compatible(self, predictor: Predictor, prepared: Prepared) -> None:
        """DataError if the data is not what the model was trained on (columns, classes, tokens)."""
        ...

    def evaluate(
        self, predictor: Predictor, prepared: Prepared, batch_size: int, device: str
    ) -> dict[str, float]:
        """Test-split metrics (`test/<name>`) of a predictor."""
        ...

    def figures(self, predictor: Predictor, prepared: Prepared) -> dict[str, Any]:
        """The task's plots of a trained model on the test split for its model card, as
        matplotlib Figures by file stem (`confusion_matrix`); {} when the task has none."""
        ...

    # -- with a capability only ------------------------------------------------------------
    def export(self, predictor: Predictor, out_dir: Path) -> Path:
        """EXPORT: write the model in the task's exchange format (lm: a Hugging Face GPT-2)."""
        ...

    def model_shape(self, conf: dict[str, Any], notes: list[str]) -> Any:
        """ESTIMATE: the model's shape for perf/estimate.py, from the config alone (no torch);
        what it had to assume goes into `notes`."""
        ...
