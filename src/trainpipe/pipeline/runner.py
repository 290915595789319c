"""One pipeline run: each stage in turn, from its cache when its inputs are unchanged.

    prepare (before anything is written: bad data is one line, exit 2)
    → the parent MLflow run → prepare's nested run → train → evaluate → register → promote

A stage's key hashes its inputs and its upstream stage's key and output (pipeline/cache.py); a
hit that still describes the registry (stages.still_valid) is reused, and recorded as a cached
nested run. A failing stage closes its run and the parent FAILED, and stops the pipeline.
"""

from __future__ import annotations

import time
from typing import Any

from trainpipe.pipeline import stages
from trainpipe.pipeline.cache import CacheEntry, stage_key
from trainpipe.pipeline.context import Pipeline
from trainpipe.pipeline.runs import OUTCOME_TAG, Recorder, stage_tags
from trainpipe.runtime.failures import classify
from trainpipe.runtime.lock import OutputDirLock


def key_of(pipeline: Pipeline, stage: str) -> str:
    index = stages.STAGES.index(stage)
    upstream = pipeline.results[stages.STAGES[index - 1]] if index else None
    config = stages.stage_config(pipeline, stage)
    return stage_key(
        stage, pipeline.data_digest, config, pipeline.code_version, pipeline.tracking_uri, upstream
    )


def lookup(pipeline: Pipeline, stage: str, key: str) -> CacheEntry | None:
    """The cached output of `stage` under `key`, if it is there and still valid."""
    if stages.always_runs(pipeline, stage):
        return None
    entry = pipeline.cache.get(stage, key)
    if entry is None or not stages.still_valid(pipeline, stage, entry.output):
        return None
    return entry


def _entry(
    pipeline: Pipeline, stage: str, key: str, output: dict[str, Any], run_id: Any
) -> CacheEntry:
    entry = CacheEntry(
        stage, key, output, run_id, pipeline.parent_run_id, time.strftime("%Y-%m-%dT%H:%M:%S")
    )
    pipeline.cache.put(entry)
    return entry


def run_pipeline(pipeline: Pipeline) -> CacheEntry | None:
    """Run every stage; returns the promote stage's entry (None when promotion is off)."""
    names = [s for s in stages.STAGES if s != "promote" or pipeline.settings["promote"]["enabled"]]
    prepare_key = key_of(pipeline, "prepare")
    prepare_hit = lookup(pipeline, "prepare", prepare_key)
    prepared = prepare_hit.output if prepare_hit else stages.prepare(pipeline)  # DataError: exit 2
    # one pipeline at a time per experiment: they would race for the champion
    lock = OutputDirLock(pipeline.directory).acquire()
    try:
        return _run_stages(pipeline, names, prepare_key, prepare_hit, prepared)
    finally:
        lock.release()


def _run_stages(
    pipeline: Pipeline,
    names: list[str],
    prepare_key: str,
    prepare_hit: CacheEntry | None,
    prepared: dict[str, Any],
) -> CacheEntry | None:
    recorder = Recorder(pipeline)
    pipeline.parent_run_id = recorder.open_parent(
        {"trainpipe.command": pipeline.command},
        {"pipeline": pipeline.settings, "overrides": pipeline.train_overrides},
    )
    try:
        for stage in names:
            key = prepare_key if stage == "prepare" else key_of(pipeline, stage)
            hit = prepare_hit if stage == "prepare" else lookup(pipeline, stage, key)
            config = stages.stage_config(pipeline, stage)
            if hit is not None:
                print(f"trainpipe: {stage}: cached (key {key}, from run {hit.run_id})", flush=True)
                recorder.record_cached(stage, key, config, hit)
                pipeline.results[stage] = hit
                continue
            print(f"trainpipe: {stage}: running (key {key})", flush=True)
            if stage == "train":
                pipeline.results[stage] = _train(pipeline, recorder, key, config)
            else:
                pipeline.results[stage] = _run_stage(
                    pipeline, recorder, stage, key, config, prepared
                )
    except BaseException as err:
        outcome = classify(err)
        recorder.close_parent(outcome.run_status, {OUTCOME_TAG: "failed"}, outcome.reason)
        raise
    decision = pipeline.results.get("promote")
    recorder.close_parent("FINISHED", _outcome_tags(pipeline, decision))
    return decision


def _run_stage(
    pipeline: Pipeline,
    recorder: Recorder,
    stage: str,
    key: str,
    config: dict[str, Any],
    prepared: dict[str, Any],
) -> CacheEntry:
    tracker = recorder.stage_run(stage, key, config)
    try:
        if stage == "prepare":  # its work was done before the runs were opened
            tracker.log_input(prepared["dataset"], prepared["input_tags"])
            output = prepared
        elif stage == "register":
            output = stages.register(pipeline, tracker)
        else:
            output = getattr(stages, stage)(pipeline)
    except BaseException as err:
        recorder.close_stage(tracker, None, classify(err).reason)
        raise
    recorder.close_stage(tracker, output)
    return _entry(pipeline, stage, key, output, tracker.run_id)


def _train(pipeline: Pipeline, recorder: Recorder, key: str, config: dict[str, Any]) -> CacheEntry:
    """The training job's own run is the train stage's run; a job that was already complete
    trained nothing now, so it is recorded like a cached stage pointing at that job's run."""
    output = stages.train(pipeline, key, stage_tags(pipeline, "train", key, cached=None))
    entry = _entry(pipeline, "train", key, output, output["run_id"])
    if output["reused_job"]:
        recorder.record_cached("train", key, config, entry)
    return entry


def _outcome_tags(pipeline: Pipeline, decision: CacheEntry | None) -> dict[str, str]:
    candidate = pipeline.output("train")
    tags = {
        "trainpipe.pipeline.model_uri": candidate["model_uri"],
        "trainpipe.pipeline.ran": ",".join(
            s for s, e in pipeline.results.items() if ran(pipeline, e)
        ),
        "trainpipe.pipeline.cached": ",".join(
            s for s, e in pipeline.results.items() if not ran(pipeline, e)
        ),
    }
    if decision is None:
        return {**tags, OUTCOME_TAG: "registered"}
    return {**tags, OUTCOME_TAG: "promoted" if decision.output["promoted"] else "refused"}


def ran(pipeline: Pipeline, entry: CacheEntry) -> bool:
    """Whether a stage's output was made in this pipeline run (a reused training job was not)."""
    return entry.pipeline_run_id == pipeline.parent_run_id and not entry.output.get("reused_job")
