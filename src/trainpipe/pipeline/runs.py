"""The MLflow runs of one pipeline run: a parent, and one nested run per stage.

A stage that ran gets a run holding its work (the training job's own run for `train`); a cached
stage gets a run too, tagged `trainpipe.pipeline.cached=true` and pointing at the run that
produced its output (`trainpipe.pipeline.source_run`), so every pipeline run shows all five
stages. One tracker, the configured `logger` (as for `trainpipe train`) pointed at the
pipeline's tracking store, writes them all: the parent run through its journal
(<pipeline run dir>/tracking), each stage's run nested under it through a journal beside it
(tracking/<stage>), sent by the parent's one writer. A tracking hiccup is retried, never lost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainpipe.errors import JobFailed
from trainpipe.pipeline.cache import CacheEntry, canonical
from trainpipe.pipeline.context import Pipeline
from trainpipe.runtime.tracker import Tracker
from trainpipe.tracking.params import flatten

STAGE_TAG = "trainpipe.pipeline.stage"
KEY_TAG = "trainpipe.pipeline.cache_key"
CACHED_TAG = "trainpipe.pipeline.cached"
SOURCE_RUN_TAG = "trainpipe.pipeline.source_run"
OUTPUT_TAG = "trainpipe.pipeline.output"
OUTCOME_TAG = "trainpipe.pipeline.outcome"
DATA_DIGEST_TAG = "trainpipe.pipeline.data_digest"  # on the parent run: the data it started from
# what the output tag leaves out: bulky, and recorded elsewhere (the prepare run's dataset input)
UNTAGGED = ("dataset", "input_tags")


def stage_tags(
    pipeline: Pipeline, stage: str, key: str, cached: CacheEntry | None
) -> dict[str, str]:
    """The tags that make a run the nested run of one stage of `pipeline`."""
    tags = {
        "mlflow.parentRunId": str(pipeline.parent_run_id),
        STAGE_TAG: stage,
        KEY_TAG: key,
        CACHED_TAG: str(cached is not None).lower(),
    }
    if cached is not None:
        tags[SOURCE_RUN_TAG] = str(cached.run_id)
        tags["trainpipe.pipeline.source_pipeline_run"] = str(cached.pipeline_run_id)
    return tags


def parent_run_name(pipeline: Pipeline) -> str:
    """`<data>-pipeline-<data digest>-<n>`, n counting the pipeline runs of the same data in the
    experiment: runs are told apart in the UI's table by what they were run on, and in order."""
    prefix = f"{pipeline.conf['data']['name']}-pipeline-{pipeline.data_digest}"
    try:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=pipeline.tracking_uri)
        experiment = client.get_experiment_by_name(pipeline.experiment)
        earlier = (
            client.search_runs(
                [experiment.experiment_id],
                filter_string=f"tags.`{DATA_DIGEST_TAG}` = '{pipeline.data_digest}'",
                max_results=10000,
            )
            if experiment is not None
            else []
        )
    except Exception:  # MLflow not answering: open_parent reports it
        earlier = []
    return f"{prefix}-{len(earlier) + 1}"


class Recorder:
    """Opens and closes the pipeline's runs."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.parent: Tracker | None = None

    @property
    def journal_dir(self) -> Path:
        return self.pipeline.run_dir / "tracking"

    def open_parent(self, tags: dict[str, str], params: dict[str, Any]) -> str:
        """The pipeline's parent run; JobFailed if MLflow does not answer (every later stage
        needs its registry, and the stages' runs need the parent's id)."""
        from hydra.utils import instantiate

        tags = {**tags, DATA_DIGEST_TAG: self.pipeline.data_digest}
        self.parent = instantiate(
            self.pipeline.cfg.logger,
            tracking_uri=self.pipeline.tracking_uri,
            experiment_name=self.pipeline.experiment,
            flush_interval_s=0.5,  # a stage's run is short: send as it goes
        )
        self.parent.start(parent_run_name(self.pipeline), tags, self.journal_dir)
        if self.parent.run_id is None:
            raise JobFailed(
                f"MLflow at {self.pipeline.tracking_uri} is not answering; the pipeline needs "
                "its tracking and registry (nothing was trained)"
            )
        self.parent.log_params(flatten(params))
        return self.parent.run_id

    def close_parent(self, status: str, tags: dict[str, str], reason: str | None = None) -> None:
        if self.parent is not None:
            self.parent.set_tags(tags)
            self.parent.finish(status, reason)

    def stage_run(
        self, stage: str, key: str, config: dict[str, Any], cached: CacheEntry | None = None
    ) -> Tracker:
        """A started nested run for `stage` (closed by `close_stage`)."""
        name = f"{stage} (cached)" if cached is not None else stage
        assert self.parent is not None, "open_parent first"
        tags = stage_tags(self.pipeline, stage, key, cached)
        tracker = self.parent.start_nested(name, tags, self.journal_dir / stage)
        tracker.log_params(flatten(config))
        return tracker

    def close_stage(
        self, tracker: Tracker, output: dict[str, Any] | None, reason: str | None = None
    ) -> None:
        """Record the stage's output (its metrics as metrics) and close its run; a failed stage
        (`output` None) is closed FAILED with `reason`."""
        if output is not None:
            shown = {k: v for k, v in output.items() if k not in UNTAGGED}
            tracker.set_tags({OUTPUT_TAG: canonical(shown)})
            if output.get("metrics"):
                tracker.log_metrics(output["metrics"], step=0)
        left = tracker.finish("FINISHED" if output is not None else "FAILED", reason)
        if left and output is not None:
            raise JobFailed(
                f"{tracker.experiment_name}: {left} tracking operation(s) of a stage could not be "
                f"sent; rerun when MLflow at {tracker.tracking_uri} answers"
            )

    def record_cached(
        self, stage: str, key: str, config: dict[str, Any], entry: CacheEntry
    ) -> None:
        """The nested run of a stage whose output was reused."""
        self.close_stage(self.stage_run(stage, key, config, cached=entry), entry.output)
