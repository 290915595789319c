"""Pre-flight: everything a job needs decided before it starts, computed once (docs/architecture.md).

    composed config → validated → the task (set, or inferred from the data) → the data loaded,
    checked and encoded → the data spec → the run name and output dir

A bad config or bad data stops here with one line (exit 2), before Hydra creates anything. A
single run is planned by the CLI before `hydra.main`, and the plan is handed to the stage; each
job of a --multirun plans itself in its own process. Once it adopts Hydra's output dir the plan's
config is read-only (`JobPlan.config`) and every later step reads it: Hydra's own copy of the
config serves Hydra (output dir, logging, sweeps) and is never written back to.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from trainpipe.config import identity
from trainpipe.config.validate import resolve, validate
from trainpipe.errors import ConfigError
from trainpipe.runtime.first import local_rank_zero_first


@dataclass
class JobPlan:
    command: str  # train | eval
    conf: dict[str, Any]  # the validated, resolved config, task and objective filled in
    task: Any  # trainpipe.tasks.Task
    task_reason: str  # "set in the config" / "inferred: …"
    prepared: Any  # the task's prepared data
    spec: dict[str, Any]  # the data spec (train) or the model's spec (eval)
    predictor: Any = None  # eval: the model being scored
    # train: the training config's fingerprint, the one its run name hashes (config/identity.py)
    fingerprint: str = ""
    # train: what a resume checkpoint must have been trained with (model, data, tokenizer)
    model_fingerprint: str = ""
    # `conf` as a read-only OmegaConf once the output dir is adopted: what later steps
    # instantiate the `_target_` nodes (logger, trainer, callbacks, model) from
    config: DictConfig | None = None

    @property
    def run_name(self) -> str:
        return str(self.conf["run_name"])

    @property
    def output_dir(self) -> Path:
        return Path(self.conf["paths"]["output_dir"])

    def adopt(self, output_dir: Path) -> None:
        """Adopt Hydra's output dir (a sweep's job runs in `<sweep dir>/<job number>`) and make
        the plan's config final: read-only from here on."""
        self.conf["paths"]["output_dir"] = str(output_dir)
        self.config = OmegaConf.create(self.conf)
        OmegaConf.set_readonly(self.config, True)


def settle(cfg: DictConfig, values: dict[str, Any]) -> None:
    with open_dict(cfg):
        for key, value in values.items():
            OmegaConf.update(cfg, key, value, merge=False)


def plan_train(cfg: DictConfig, validated: dict[str, Any] | None = None) -> JobPlan:
    """`validated`: `cfg` already checked by the caller (schema and the task's rules)."""
    from trainpipe.tasks import check_config, resolve_task

    cfg = copy.deepcopy(cfg)  # the plan settles its own copy: the caller's (Hydra's) stays as given
    if validated is None:  # e.g. a job of a --multirun: each checks its own config
        validated = validate(cfg, "train")
        check_config(validated)
    conf = validated
    # of the config as given (`task: auto`), as the run name's
    fingerprint = identity.config_fingerprint(cfg)
    task, reason = resolve_task(conf)
    # run_name first: it hashes the config as the user gave it (`task: auto` included), so
    # `--cfg job` and every later resolution name the same job
    settled: dict[str, Any] = {"run_name": conf["run_name"], "task": task.name}
    if conf["optimized_metric"] == "auto":
        settled["optimized_metric"] = task.objective.metric
    if conf["optimized_mode"] == "auto":
        settled["optimized_mode"] = task.objective.mode
    settled.update(task.trainer_defaults(conf))
    settle(cfg, settled)
    model_fingerprint = identity.fingerprint(cfg, identity.MODEL_SECTIONS)
    conf = resolve(cfg)
    # under torchrun local rank 0 builds the data's cache and the other ranks load it
    prepared = local_rank_zero_first(
        lambda: task.prepare(conf), conf["data"]["cache_dir"], "prepare the data"
    )
    spec = task.data_spec(prepared)
    return JobPlan(
        "train",
        conf,
        task,
        reason,
        prepared,
        spec,
        fingerprint=fingerprint,
        model_fingerprint=model_fingerprint,
    )


def plan_eval(cfg: DictConfig, validated: dict[str, Any] | None = None) -> JobPlan:
    from trainpipe.loading import load_model
    from trainpipe.tasks import get_task

    cfg = copy.deepcopy(cfg)  # as in plan_train
    conf = validated if validated is not None else validate(cfg, "eval")
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
    return JobPlan("eval", conf, task, reason, prepared, predictor.spec, predictor)


PLANNERS = {"train": plan_train, "eval": plan_eval}


def plan_job(command: str, cfg: DictConfig, validated: dict[str, Any] | None = None) -> JobPlan:
    """The job's plan; `validated` is `cfg` already validated (the CLI's pre-flight checked it:
    it is not checked twice)."""
    return PLANNERS[command](cfg, validated)
