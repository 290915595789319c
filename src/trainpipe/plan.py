"""Pre-flight: everything a job needs decided before it starts, computed once (docs/architecture.md).

    composed config → validated → the task (set, or inferred from the data) → the data loaded,
    checked and encoded → the data spec → the run name and output dir

A bad config or bad data stops here with one line (exit 2), before Hydra creates anything. A
single run is planned by the CLI before `hydra.main`, and the plan is handed to the stage; each
job of a --multirun plans itself in its own process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from trainpipe.config.validate import resolve, validate
from trainpipe.errors import ConfigError


@dataclass
class JobPlan:
    command: str  # train | eval
    conf: dict[str, Any]  # the validated, resolved config, task and objective filled in
    task: Any  # trainpipe.tasks.Task
    task_reason: str  # "set in the config" / "inferred: …"
    prepared: Any  # the task's prepared data
    spec: dict[str, Any]  # the data spec (train) or the model's spec (eval)
    settled: dict[str, Any]  # the keys decided here, to write into Hydra's own copy of the config
    predictor: Any = None  # eval: the model being scored

    @property
    def run_name(self) -> str:
        return str(self.conf["run_name"])

    @property
    def output_dir(self) -> Path:
        return Path(self.conf["paths"]["output_dir"])

    def apply(self, cfg: DictConfig, output_dir: Path) -> None:
        """Write the decided keys into a config composed from the same command (Hydra's), and
        adopt Hydra's output dir (a sweep's job runs in `<sweep dir>/<job number>`)."""
        self.settled["paths.output_dir"] = str(output_dir)
        self.conf["paths"]["output_dir"] = str(output_dir)
        settle(cfg, self.settled)


def settle(cfg: DictConfig, values: dict[str, Any]) -> None:
    with open_dict(cfg):
        for key, value in values.items():
            OmegaConf.update(cfg, key, value, merge=False)


def plan_train(cfg: DictConfig) -> JobPlan:
    from trainpipe.tasks import check_config, resolve_task

    conf = validate(cfg, "train")
    check_config(conf)
    task, reason = resolve_task(conf)
    # run_name first: it hashes the config as the user gave it (`task: auto` included), so
    # `--cfg job` and every later resolution name the same job
    settled: dict[str, Any] = {"run_name": conf["run_name"], "task": task.name}
    if conf["optimized_metric"] == "auto":
        settled["optimized_metric"] = task.objective.metric
    if conf["optimized_mode"] == "auto":
        settled["optimized_mode"] = task.objective.mode
    settle(cfg, settled)
    conf = resolve(cfg)
    prepared = task.prepare(conf)
    return JobPlan("train", conf, task, reason, prepared, task.data_spec(prepared), settled)


def plan_eval(cfg: DictConfig) -> JobPlan:
    from trainpipe.loading import load_model
    from trainpipe.tasks import get_task

    conf = validate(cfg, "eval")
    predictor, trained_conf = load_model(conf["model_uri"], conf["logger"].get("tracking_uri"))
    task = get_task(predictor.spec["task"])
    settled = {"run_name": conf["run_name"]}
    if conf.get("data") is None:  # the data (and split seed) the model was trained on
        if trained_conf is None:
            raise ConfigError(
                "data",
                "the model's training config is not available; choose the data (e.g. data=csv data.path=…)",
            )
        settled.update(
            {k: trained_conf[k] for k in ("data", "tokenizer", "seed") if k in trained_conf}
        )
    settle(cfg, settled)
    conf = resolve(cfg)
    prepared = task.prepare(conf)
    reason = f"the model's task ({predictor.spec['task']})"
    return JobPlan("eval", conf, task, reason, prepared, predictor.spec, settled, predictor)


PLANNERS = {"train": plan_train, "eval": plan_eval}


def plan_job(command: str, cfg: DictConfig) -> JobPlan:
    return PLANNERS[command](cfg)
