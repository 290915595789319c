"""Sweeps in MLflow: one parent run per `--multirun`, one nested child run per job.

The Hydra callback runs in the sweep's own process: it opens (or, for a rerun of the same sweep,
reopens) the parent run and writes its id to `<sweep dir>/mlflow_parent_run.json`, where every
job — in this process, a joblib worker or a SLURM node — finds it. At the end it records the
best job's value and overrides on the parent, registers the best job's model (`registry.sweep:
best`, tracking/sweep_result.py) and prints the jobs. Tracking trouble is logged, never raised.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from trainpipe.config.targets import declared
from trainpipe.runtime.atomic import atomic_write_text
from trainpipe.tracking.sweep_result import print_jobs, register_best

log = logging.getLogger(__name__)

PARENT_FILE = "mlflow_parent_run.json"
OBJECTIVE_TAG = "trainpipe.objective"
# which metric the objective is, and whether larger is better ("val/acc max"): the jobs decide it
# (`optimized_metric: auto` follows each job's task), so the parent reads it from them
OBJECTIVE_METRIC_TAG = "trainpipe.objective_metric"
OVERRIDES_TAG = "trainpipe.sweep.overrides"


def parent_run_id(sweep_dir: str | Path) -> str | None:
    """The parent run id a sweep's job should nest under (None outside tracked sweeps)."""
    path = Path(sweep_dir) / PARENT_FILE
    return json.loads(path.read_text())["run_id"] if path.is_file() else None


def _tracking(config: DictConfig) -> tuple[str, str] | None:
    logger = config.get("logger")
    if not declared(logger, "logger", "tracked", default=False):
        return None
    return str(logger.tracking_uri), str(logger.experiment_name)


def _close_interrupted_children(client: Any, parent_id: str) -> None:
    """Rerunning a sweep: jobs of the earlier attempt still RUNNING were killed with it."""
    parent = client.get_run(parent_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'RUNNING'",
    )
    for child in children:
        client.set_tag(
            child.info.run_id, "trainpipe.failure_reason", "interrupted: the sweep process died"
        )
        client.set_terminated(child.info.run_id, status="KILLED")


class MLflowSweepCallback(Callback):
    """Hydra callback (configs/hydra/default.yaml) that gives each sweep a parent MLflow run."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        tracking = _tracking(config)
        if tracking is None:
            return
        try:
            self._open_parent(config, *tracking)
        except Exception as err:  # a sweep without a parent run is still a sweep
            log.warning(
                "could not create the sweep's parent MLflow run: %s", str(err).splitlines()[0]
            )

    def _open_parent(self, config: DictConfig, tracking_uri: str, experiment_name: str) -> None:
        import mlflow
        from mlflow.entities import Param

        from trainpipe.tracking.params import flatten
        from trainpipe.tracking.replay import get_or_create_experiment

        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        existing = parent_run_id(sweep_dir)
        if existing is not None:  # a rerun of this sweep continues it
            _close_interrupted_children(client, existing)
            client.update_run(existing, status="RUNNING")
            return
        tags = {"trainpipe.sweep_dir": str(sweep_dir.resolve()), "trainpipe.sweep": "parent"}
        run = client.create_run(
            get_or_create_experiment(client, experiment_name), run_name=sweep_dir.name, tags=tags
        )
        sweep = {
            "sweeper": OmegaConf.to_container(config.hydra.sweeper, resolve=True),
            "launcher": config.hydra.launcher.get("_target_"),
        }
        params = {
            "sweep.overrides": " ".join(config.hydra.overrides.task),
            **flatten({"sweep": sweep}),
        }
        if config.get("optimized_metric") != "auto":  # auto: the jobs' task decides (at the end)
            params["sweep.optimized_metric"] = str(config.get("optimized_metric"))
        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), 100):
            client.log_batch(run.info.run_id, params=items[start : start + 100])
        atomic_write_text(sweep_dir / PARENT_FILE, json.dumps({"run_id": run.info.run_id}))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        tracking = _tracking(config)
        run_id = parent_run_id(str(config.hydra.sweep.dir))
        if tracking is None or run_id is None:
            return
        try:
            self._summarise(run_id, config, *tracking)
        except Exception as err:
            log.warning(
                "could not record the sweep's best job in MLflow: %s", str(err).splitlines()[0]
            )

    def _summarise(
        self, run_id: str, config: DictConfig, tracking_uri: str, experiment_name: str
    ) -> None:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        experiment = client.get_experiment_by_name(experiment_name)
        children = client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
        )
        scored = [
            (float(c.data.tags[OBJECTIVE_TAG]), c) for c in children if OBJECTIVE_TAG in c.data.tags
        ]
        scored = [(value, child) for value, child in scored if math.isfinite(value)]
        failed = sum(1 for c in children if c.info.status == "FAILED")
        declared = [
            c.data.tags[OBJECTIVE_METRIC_TAG].split()
            for c in children
            if OBJECTIVE_METRIC_TAG in c.data.tags
        ]
        metric, mode = (
            declared[0]
            if declared
            else (str(config.get("optimized_metric")), str(config.get("optimized_mode")))
        )
        client.log_metric(run_id, "sweep/jobs", len(children))
        client.log_metric(run_id, "sweep/failed_jobs", failed)
        if metric != "auto":  # resolved: what the jobs optimised
            _log_new_params(
                client, run_id, {"sweep.optimized_metric": metric, "sweep.optimized_mode": mode}
            )
        best, registered = None, None
        if scored:
            pick = max if mode == "max" else min
            value, best = pick(scored, key=lambda pair: pair[0])
            client.log_metric(run_id, f"best/{metric}", value)
            client.set_tag(run_id, "best.run_id", best.info.run_id)
            client.set_tag(run_id, "best.overrides", best.data.tags.get(OVERRIDES_TAG, ""))
            chosen = dict(
                item.partition("=")[::2] for item in best.data.tags.get(OVERRIDES_TAG, "").split()
            )
            for key, value in chosen.items():
                client.set_tag(run_id, f"best.{key.lstrip('+~')}", value)
            _log_new_params(
                client, run_id, {f"best.{k.lstrip('+~')}": v for k, v in chosen.items()}
            )
            registered = _register_best(tracking_uri, best)
            if registered:
                client.set_tag(run_id, "best.model", registered)
        client.set_terminated(run_id, status="FINISHED")
        objectives = {child.info.run_id: value for value, child in scored}
        print_jobs(children, objectives, best, metric, OVERRIDES_TAG, registered)


def _log_new_params(client: Any, run_id: str, params: dict[str, str]) -> None:
    """Params are write-once: a rerun of the sweep that finds another best keeps the first
    values (the tags hold the new best)."""
    from mlflow.entities import Param

    try:
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
    except Exception:
        log.info("params of an earlier run of this sweep are kept: %s", ", ".join(params))


def _register_best(tracking_uri: str, best: Any) -> str | None:
    try:
        return register_best(tracking_uri, best)
    except Exception as err:  # the jobs are trained and recorded: say so and go on
        log.warning(
            "could not register the sweep's best job (run %s): %s; register it with "
            "registry.sweep=each or rerun it alone",
            best.info.run_id,
            str(err).splitlines()[0],
        )
        return None


def record_failed_job(config: DictConfig, reason: str) -> None:
    """A sweep job that failed before its run started still shows up, as a FAILED child run."""
    from hydra.core.hydra_config import HydraConfig

    try:
        tracking = _tracking(config)
        if tracking is None:
            return
        import mlflow

        from trainpipe.tracking.replay import get_or_create_experiment

        hydra_cfg = HydraConfig.get()
        tags = {
            OVERRIDES_TAG: " ".join(hydra_cfg.overrides.task),
            "trainpipe.failure_reason": reason[:5000],
        }
        parent = parent_run_id(hydra_cfg.sweep.dir)
        if parent:
            tags["mlflow.parentRunId"] = parent
        client = mlflow.MlflowClient(tracking_uri=tracking[0])
        run = client.create_run(
            get_or_create_experiment(client, tracking[1]),
            run_name=f"job-{hydra_cfg.job.num}",
            tags=tags,
        )
        client.set_terminated(run.info.run_id, status="FAILED")
    except Exception as err:
        log.warning("could not record the failed job in MLflow: %s", str(err).splitlines()[0])
