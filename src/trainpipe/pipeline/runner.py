"""One pipeline run: each stage in turn, from its cache when its inputs are unchanged.

    prepare (before anything is written: bad data is one line, exit 2)
    → the parent MLflow run → prepare's nested run → train → evaluate → register → promote
    → score (when turned on)

A stage's key hashes its inputs and its upstream stage's key and output (pipeline/cache.py); a
hit that still describes the registry (`Stage.still_valid`) is reused, and recorded as a cached
nested run. A failing stage closes its run and the parent FAILED, and stops the pipeline.
"""

from __future__ import annotations

from trainpipe.pipeline.cache import CacheEntry, stage_key
from trainpipe.pipeline.context import Pipeline
from trainpipe.pipeline.runs import OUTCOME_TAG, Recorder
from trainpipe.pipeline.stages import STAGES, Stage
from trainpipe.runtime.failures import classify
from trainpipe.runtime.lock import OutputDirLock


def key_of(pipeline: Pipeline, stage: Stage) -> str:
    index = STAGES.index(stage)
    upstream = pipeline.results[STAGES[index - 1].name] if index else None
    return stage_key(
        stage.name,
        pipeline.data_digest,
        stage.config(pipeline),
        pipeline.code_version,
        pipeline.tracking_uri,
        upstream,
    )


def lookup(pipeline: Pipeline, stage: Stage, key: str) -> CacheEntry | None:
    """The cached output of `stage` under `key`, if it is there and still valid."""
    if stage.always_runs(pipeline):
        return None
    entry = pipeline.cache.get(stage.name, key)
    if entry is None or not stage.still_valid(pipeline, entry.output):
        return None
    return entry


def run_pipeline(pipeline: Pipeline) -> CacheEntry | None:
    """Run every stage; returns the promote stage's entry (None when promotion is off)."""
    chosen = [s for s in STAGES if s.enabled(pipeline)]
    for stage in chosen:
        stage.check(pipeline)  # settings a later stage cannot run with: before anything runs
    first = chosen[0]
    first_key = key_of(pipeline, first)
    first_hit = lookup(pipeline, first, first_key)
    if first_hit is None:
        pipeline.job_plan()  # bad data stops here, before anything is written: exit 2
    # one pipeline at a time per experiment: they would race for the champion
    lock = OutputDirLock(pipeline.directory).acquire()
    try:
        return _run_stages(pipeline, chosen, {first.name: (first_key, first_hit)})
    finally:
        lock.release()


def _run_stages(
    pipeline: Pipeline,
    chosen: list[Stage],
    looked_up: dict[str, tuple[str, CacheEntry | None]],
) -> CacheEntry | None:
    recorder = Recorder(pipeline)
    pipeline.parent_run_id = recorder.open_parent(
        {"trainpipe.command": pipeline.command},
        {"pipeline": pipeline.settings, "overrides": pipeline.train_overrides},
    )
    try:
        for stage in chosen:
            if stage.name in looked_up:
                key, hit = looked_up[stage.name]
            else:
                key = key_of(pipeline, stage)
                hit = lookup(pipeline, stage, key)
            config = stage.config(pipeline)
            if hit is not None:
                print(
                    f"trainpipe: {stage.name}: cached (key {key}, from run {hit.run_id})",
                    flush=True,
                )
                recorder.record_cached(stage.name, key, config, hit)
                pipeline.results[stage.name] = hit
                continue
            print(f"trainpipe: {stage.name}: running (key {key})", flush=True)
            pipeline.results[stage.name] = stage.execute(pipeline, recorder, key, config)
    except BaseException as err:
        outcome = classify(err)
        recorder.close_parent(outcome.run_status, {OUTCOME_TAG: "failed"}, outcome.reason)
        raise
    decision = pipeline.results.get("promote")
    recorder.close_parent("FINISHED", _outcome_tags(pipeline, decision))
    return decision


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
