"""The MLflow record of a scoring job: one run in the model's experiment, told apart from the
training runs there by its `trainpipe.run_type` tag (`predict`; training runs carry `train`).

It holds what a later reader of the predictions needs to trust them: the model version scored
(an alias resolved to its version), the input's digest and row count, the output's path and
digest, rows/s. The run is written through the job's tracker (journal first, docs/architecture.md
"Tracking"), its journal in the job's partial dir: a killed and resumed job continues the same
run. `logger=none` records nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trainpipe.tracking.lineage import COMMAND_ENV, RUN_TYPE_TAG, command_line, versions
from trainpipe.tracking.params import flatten

FALLBACK_EXPERIMENT = "predictions"  # a checkpoint file scored: no experiment of its own


def resolve_model(uri: str, tracking_uri: str | None) -> tuple[str, str | None]:
    """(the model as scored — `models:/NAME@ALIAS` resolved to `models:/NAME/VERSION`, a run URI
    as is, a checkpoint file by its content —, the experiment of the run that trained it)."""
    from trainpipe.loading import REGISTRY_SCHEMES

    if not uri.startswith(REGISTRY_SCHEMES):
        from trainpipe.predict.writers import file_sha256

        path = Path(uri)
        return (f"file:{file_sha256(path)}" if path.is_file() else str(path.resolve())), None
    import mlflow

    from trainpipe.tracking.model_versions import version_of

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    version = version_of(uri, tracking_uri)
    run_id = version.run_id if version is not None else uri[len("runs:/") :].split("/", 1)[0]
    model = f"models:/{version.name}/{version.version}" if version is not None else uri
    try:
        experiment_id = client.get_run(run_id).info.experiment_id
        return model, client.get_experiment(experiment_id).name
    except Exception:  # a model registered from outside trainpipe without a run here
        return model, None


class ScoringRecord:
    def __init__(
        self,
        conf: dict[str, Any],
        directory: Path,
        model: str,
        experiment: str | None,
        key: str,
        tracker: Any = None,
    ) -> None:
        """`tracker`: an open run to record into (the pipeline's score stage hands its nested
        run) instead of a run of the job's own."""
        self.conf = conf
        self.directory = directory
        self.model = model
        self.key = key
        self.owned = tracker is None
        if tracker is None:
            from hydra.utils import instantiate

            name = conf["experiment_name"] or experiment or FALLBACK_EXPERIMENT
            tracker = instantiate(conf["logger"], experiment_name=name)
        self.tracker = tracker

    def start(self, request: Any) -> None:
        tags = {
            RUN_TYPE_TAG: "predict",
            "trainpipe.command": os.environ.get(COMMAND_ENV) or command_line(),
            "trainpipe.predict.model": self.model,
            "trainpipe.predict.model_uri": self.conf["model_uri"],
            "trainpipe.predict.input": request.reader.describe(),
            "trainpipe.predict.input_digest": request.reader.digest(),
            "trainpipe.predict.output": str(request.output.resolve()),
            "trainpipe.predict.key": self.key,
            **versions(),
        }
        if self.owned:
            journal = self.directory / "tracking"
            self.tracker.start(f"predict-{self.key[:8]}", tags, journal_dir=journal)
        else:
            self.tracker.set_tags(tags)
        params = {k: v for k, v in self.conf.items() if k not in ("logger", "tracking_uri")}
        self.tracker.log_params(flatten(params, drop_private=True))

    def finish(self, request: Any, result: Any) -> int:
        """Log the result and close the run; returns how many writes are still unsent."""
        self.tracker.set_tags(
            {
                "trainpipe.predict.rows": str(result.rows),
                "trainpipe.predict.output_digest": result.output_digest,
            }
        )
        metrics = {
            "predict/rows": result.rows,
            "predict/rows_per_s": result.rows_per_s,
            "predict/seconds": result.seconds,
            "predict/resumed_rows": result.resumed_rows,
            "predict/bad_rows": result.bad_rows,
        }
        self.tracker.log_metrics(metrics, step=0)
        result.run_id = self.tracker.run_id
        return self.tracker.finish("FINISHED") if self.owned else 0

    def finish_failed(self, reason: str, status: str = "FAILED") -> None:
        if self.owned:  # else the run's owner closes it
            self.tracker.finish(status, reason)
