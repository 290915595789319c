"""What one `trainpipe pipeline` command is about, decided before anything is written.

The command line holds training overrides (as for `trainpipe train`) and the pipeline's own keys
(`pipeline.…`, configs/pipeline.yaml). Both are composed and validated here, with no torch and
no MLflow: a mistake is one line, exit 2, nothing written.
"""

from __future__ import annotations

import datetime
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainpipe.errors import ConfigError
from trainpipe.pipeline.cache import CacheEntry, StageCache

SETTINGS_PREFIX = "pipeline."


@dataclass
class Pipeline:
    cfg: Any  # the composed training config (DictConfig, with Hydra's node)
    conf: dict[str, Any]  # the same, validated and resolved
    train_overrides: list[str]  # handed to `trainpipe train` as typed
    settings: dict[str, Any]  # the resolved `pipeline` section (configs/pipeline.yaml)
    tracking_uri: str  # absolute (a sqlite path made absolute)
    data_digest: str  # content of the configured data (config/identity.py)
    code_version: str  # trainpipe version, git commit, digest of uncommitted changes
    directory: Path  # <log dir>/pipeline/<experiment>: the cache and one dir per pipeline run
    command: str  # as typed (secrets masked), for the parent run
    run_dir: Path = field(init=False)  # this pipeline run's journals
    parent_run_id: str | None = None
    results: dict[str, CacheEntry] = field(default_factory=dict)  # stage → its entry, in order
    _plan: Any = field(default=None, repr=False)  # the JobPlan, once the data is prepared
    _held_out: Any = field(default=None, repr=False)  # the candidate with the prepared data

    def __post_init__(self) -> None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.run_dir = self.directory / "runs" / f"{stamp}-{uuid.uuid4().hex[:6]}"

    @property
    def experiment(self) -> str:
        return str(self.conf["logger"]["experiment_name"])

    @property
    def model_name(self) -> str:
        return str(self.conf["registry"]["model_name"])

    @property
    def cache(self) -> StageCache:
        return StageCache(self.directory / "cache")

    def output(self, stage: str) -> dict[str, Any]:
        return self.results[stage].output

    def record(self, stage: str, key: str, output: dict[str, Any], run_id: Any) -> CacheEntry:
        """Cache `stage`'s output under `key` and keep it as this run's result."""
        entry = CacheEntry(
            stage, key, output, run_id, self.parent_run_id, time.strftime("%Y-%m-%dT%H:%M:%S")
        )
        self.cache.put(entry)
        return entry

    def job_plan(self) -> Any:
        """The training job's plan with its data prepared: once per pipeline run, whichever stage
        asks first (DataError on bad data)."""
        if self._plan is None:
            from trainpipe.plan import plan_train

            self._plan = plan_train(self.cfg, self.conf)
        return self._plan

    def held_out(self) -> Any:
        """The candidate (the train stage's model) and the prepared data it is scored on
        (registry.scoring.HeldOut), loaded once."""
        if self._held_out is None:
            from trainpipe.loading import load_model
            from trainpipe.registry.scoring import HeldOut

            plan = self.job_plan()
            uri = self.output("train")["model_uri"]
            predictor, trained_conf = load_model(uri, self.tracking_uri, key="model")
            self._held_out = HeldOut(plan.task, predictor, trained_conf, plan.prepared)
        return self._held_out


def split_overrides(args: list[str]) -> tuple[list[str], list[str]]:
    """(training overrides, pipeline overrides) of the command line."""
    mine = [a for a in args if a.lstrip("+~").startswith(SETTINGS_PREFIX)]
    return [a for a in args if a not in mine], mine


def plan_pipeline(args: list[str], command: str = "trainpipe pipeline") -> Pipeline:
    """Compose and check both configs of the command line `args`; ConfigError on the first
    mistake."""
    from trainpipe.config.compose import compose
    from trainpipe.config.identity import source_digest
    from trainpipe.config.targets import declared
    from trainpipe.config.validate import validate
    from trainpipe.tasks import check_config
    from trainpipe.tracking.lineage import code_version
    from trainpipe.tracking.mlflow_tracker import absolute_uri

    train_overrides, pipeline_overrides = split_overrides(args)
    settings = validate(compose("pipeline", pipeline_overrides), "pipeline")["pipeline"]
    cfg = compose("train", train_overrides)
    conf = validate(cfg, "train")
    check_config(conf)
    if not declared(conf["logger"], "logger", "tracked", default=False):  # nothing to register with
        raise ConfigError("logger", "the pipeline registers and promotes models: use logger=mlflow")
    if not conf["registry"]["register"]:
        raise ConfigError("registry.register", "the pipeline registers its model: must be true")
    return Pipeline(
        cfg=cfg,
        conf=conf,
        train_overrides=train_overrides,
        settings=settings,
        tracking_uri=absolute_uri(str(conf["logger"]["tracking_uri"])),
        data_digest=source_digest(conf["data"]),
        code_version=code_version(),
        directory=Path(conf["paths"]["log_dir"]) / "pipeline" / conf["logger"]["experiment_name"],
        command=command,
    )
