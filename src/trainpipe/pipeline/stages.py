"""The stages of a pipeline, one object each: the config its cache key covers, its work, and
whether a cached output of it still holds.

    prepare   load, check and encode the data → its content digest and split digest
    train     `trainpipe train …` as a child process (its lock, resume and journal guarantees
              hold): the training job, nested under the pipeline's run, registers the candidate
    evaluate  the candidate on the held-out test split of the data prepare prepared
    register  the version tagged with the pipeline run and the scores it was evaluated with
    promote   the gate (trainpipe.registry.promote) judges the scores evaluate measured: champion,
              or refused with the reason
    score     (off by default) the champion scores a configured file with `trainpipe predict`

The data is prepared at most once per pipeline run and the candidate scored once
(`Pipeline.job_plan`, `Pipeline.held_out`). A stage's output is a JSON-able dict, cached by the
runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainpipe.errors import ConfigError
from trainpipe.pipeline.cache import CacheEntry
from trainpipe.pipeline.context import Pipeline
from trainpipe.pipeline.runs import Recorder, stage_tags
from trainpipe.pipeline.training_job import StageFailed, run_training_job
from trainpipe.runtime.failures import classify

# data keys that change how batches are served, not what the prepared data is
SERVING_KEYS = ("batch_size", "num_workers", "cache_dir")
PIPELINE_RUN_TAG = "trainpipe.pipeline.run_id"


class Stage:
    """One step of the pipeline. `run` does the work inside the stage's own nested run."""

    name = ""

    def config(self, pipeline: Pipeline) -> dict[str, Any]:
        """The part of the config the stage's output depends on (its cache key hashes it)."""
        raise NotImplementedError

    def always_runs(self, pipeline: Pipeline) -> bool:
        """Whether a cached output is never reused."""
        return False

    def still_valid(self, pipeline: Pipeline, output: dict[str, Any]) -> bool:
        """Whether a cached output still describes the registry."""
        return True

    def enabled(self, pipeline: Pipeline) -> bool:
        """Whether the pipeline runs this stage (its settings may turn it off)."""
        return True

    def check(self, pipeline: Pipeline) -> None:
        """ConfigError/DataError for settings it cannot run with, before anything is written."""
        return None

    def run(self, pipeline: Pipeline, tracker: Any) -> dict[str, Any]:
        raise NotImplementedError

    def execute(
        self, pipeline: Pipeline, recorder: Recorder, key: str, config: dict[str, Any]
    ) -> CacheEntry:
        """Run the stage in a nested run of its own, and cache its output."""
        tracker = recorder.stage_run(self.name, key, config)
        try:
            output = self.run(pipeline, tracker)
        except BaseException as err:
            recorder.close_stage(tracker, None, classify(err).reason)
            raise
        recorder.close_stage(tracker, output)
        return pipeline.record(self.name, key, output, tracker.run_id)


class Prepare(Stage):
    name = "prepare"

    def config(self, pipeline: Pipeline) -> dict[str, Any]:
        conf = pipeline.conf
        data = {k: v for k, v in conf["data"].items() if k not in SERVING_KEYS}
        return {"task": conf["task"], "data": data, "tokenizer": conf.get("tokenizer")}

    def always_runs(self, pipeline: Pipeline) -> bool:
        """Data whose content is known only once loaded (the hub: a name may point at new
        data) is prepared every time; the stages after it are still cached when its content
        digest is unchanged."""
        from trainpipe.config.sources import source_of

        return source_of(pipeline.conf["data"]).digest_after_load

    def run(self, pipeline: Pipeline, tracker: Any) -> dict[str, Any]:
        output = prepared_output(pipeline)  # prepared before the runs were opened
        tracker.log_input(output["dataset"], output["input_tags"])
        return output


class Train(Stage):
    name = "train"

    def config(self, pipeline: Pipeline) -> dict[str, Any]:
        return {k: v for k, v in pipeline.conf.items() if k != "paths"}  # but where files go

    def still_valid(self, pipeline: Pipeline, output: dict[str, Any]) -> bool:
        from trainpipe.registry import RegistryError
        from trainpipe.registry.store import RegisteredModel

        try:
            RegisteredModel(pipeline.tracking_uri, pipeline.model_name).version(output["version"])
        except RegistryError:
            return False
        return True

    def execute(
        self, pipeline: Pipeline, recorder: Recorder, key: str, config: dict[str, Any]
    ) -> CacheEntry:
        """The training job's own run is the train stage's run; a job that was already complete
        trained nothing now, so it is recorded like a cached stage pointing at that job's run."""
        tags = stage_tags(pipeline, self.name, key, cached=None)
        output = run_training_job(pipeline, key, tags)
        entry = pipeline.record(self.name, key, output, output["run_id"])
        if output["reused_job"]:
            recorder.record_cached(self.name, key, config, entry)
        return entry


class Evaluate(Stage):
    name = "evaluate"

    def config(self, pipeline: Pipeline) -> dict[str, Any]:
        return dict(pipeline.settings["evaluate"])

    def run(self, pipeline: Pipeline, tracker: Any) -> dict[str, Any]:
        """The candidate's test metrics, and the one the gate will judge (ConfigError when the
        configured gate metric is not among them: better now than at promotion)."""
        from trainpipe.registry import Gate
        from trainpipe.registry.scoring import score_held_out
        from trainpipe.registry.store import RegisteredModel

        candidate, prepared = pipeline.output("train"), pipeline.output("prepare")
        settings = pipeline.settings["evaluate"]
        version = RegisteredModel(pipeline.tracking_uri, pipeline.model_name).version(
            candidate["version"]
        )
        trained_on = version.tags.get("split_digest")
        if trained_on != prepared["split_digest"]:
            raise StageFailed(
                self.name,
                f"{candidate['model_uri']} was trained on splits {trained_on}, the pipeline "
                f"prepared {prepared['split_digest']}: the data changed while the pipeline ran",
            )
        held_out = pipeline.held_out()
        scores = score_held_out(
            held_out, batch_size=settings["batch_size"], device=_device(settings["device"])
        )
        task = held_out.task
        gate = Gate.from_config(pipeline.conf).resolve(
            task.objective.gate_metric, task.objective.mode, task.metric_directions
        )
        if gate.metric not in scores.metrics:
            raise ConfigError(
                "registry.gate.metric",
                f"{gate.metric!r} is not among the test metrics ({', '.join(sorted(scores.metrics))})",
            )
        return {
            "model_uri": candidate["model_uri"],
            "version": candidate["version"],
            "metrics": dict(scores.metrics),
            "gate": {"rule": gate.describe(), "value": scores.metrics[gate.metric]},
            "split_digest": scores.split_digest,
            "data_digest": scores.data_digest,
            "settings": dict(settings),
        }


class Register(Stage):
    name = "register"

    def config(self, pipeline: Pipeline) -> dict[str, Any]:
        return {"model_name": pipeline.model_name}

    def run(self, pipeline: Pipeline, tracker: Any) -> dict[str, Any]:
        """Link the version to this pipeline run and the scores it was evaluated with."""
        evaluated = pipeline.output("evaluate")
        tags = {
            PIPELINE_RUN_TAG: str(pipeline.parent_run_id),
            "trainpipe.pipeline.split_digest": evaluated["split_digest"],
            **{f"trainpipe.pipeline.{k}": f"{v:.6g}" for k, v in evaluated["metrics"].items()},
        }
        tracker.set_version_tags(pipeline.model_name, evaluated["version"], tags)
        return {"model_uri": evaluated["model_uri"], "version": evaluated["version"], "tags": tags}


class Promote(Stage):
    name = "promote"

    def enabled(self, pipeline: Pipeline) -> bool:
        return bool(pipeline.settings["promote"]["enabled"])

    def config(self, pipeline: Pipeline) -> dict[str, Any]:
        return {"model_name": pipeline.model_name, "gate": pipeline.conf["registry"]["gate"]}

    def still_valid(self, pipeline: Pipeline, output: dict[str, Any]) -> bool:
        """The champion is the one the cached promotion left (else the gate must judge again)."""
        return current_champion(pipeline) == output["champion_after"]

    def run(self, pipeline: Pipeline, tracker: Any) -> dict[str, Any]:
        """The gate judges the scores evaluate measured (the champion, if any, is scored on the
        same prepared test split)."""
        from trainpipe.registry import promote as promote_version
        from trainpipe.registry.scoring import Scores

        evaluated = pipeline.output("evaluate")
        challenger = Scores(
            evaluated["metrics"], evaluated["split_digest"], evaluated["data_digest"]
        )
        decision = promote_version(
            pipeline.tracking_uri,
            pipeline.model_name,
            pipeline.output("register")["version"],
            reason=f"trainpipe pipeline (run {pipeline.parent_run_id})",
            actor="trainpipe pipeline",
            held_out=pipeline.held_out(),
            challenger=challenger,
        )
        before = _version_number(decision.champion_before)
        return {
            "promoted": bool(decision.promoted),
            "version": str(decision.version),
            "champion_before": before,
            "champion_after": str(decision.version) if decision.promoted else before,
            "rule": decision.rule,
            "message": decision.message,
            "objections": list(decision.objections),
            "scores": decision.scores,
        }


class Score(Stage):
    """After promotion, the champion scores `pipeline.score.data_path` into `.output` — the batch
    inference of `trainpipe predict` (predict/batch.py), recorded in this stage's nested run.
    Cached by the champion version (promote's output, upstream) and the input's content."""

    name = "score"

    def enabled(self, pipeline: Pipeline) -> bool:
        return bool(pipeline.settings["score"]["enabled"]) and Promote().enabled(pipeline)

    def request(self, pipeline: Pipeline, model_uri: str) -> Any:
        from trainpipe.predict.batch import settings_request

        store = f"tracking_uri='{pipeline.tracking_uri}'"  # the pipeline's registry
        return settings_request(pipeline.settings["score"], "pipeline.score", model_uri, [store])

    def check(self, pipeline: Pipeline) -> None:
        self.request(pipeline, f"models:/{pipeline.model_name}@champion")

    def config(self, pipeline: Pipeline) -> dict[str, Any]:
        request = self.request(pipeline, f"models:/{pipeline.model_name}@champion")
        return {**pipeline.settings["score"], "input_digest": request.reader.digest()}

    def still_valid(self, pipeline: Pipeline, output: dict[str, Any]) -> bool:
        from trainpipe.predict.writers import file_sha256

        path = output.get("output")  # None: skipped for want of a champion
        return path is None or (
            Path(path).is_file() and file_sha256(Path(path)) == output["output_digest"]
        )

    def run(self, pipeline: Pipeline, tracker: Any) -> dict[str, Any]:
        from trainpipe.predict.batch import run_predict

        champion = current_champion(pipeline)
        if champion is None:  # the first candidate was refused: nothing to score with
            return {"output": None, "skipped": "no champion"}
        request = self.request(pipeline, f"models:/{pipeline.model_name}/{champion}")
        return run_predict(request, tracker).summary()


STAGES: tuple[Stage, ...] = (Prepare(), Train(), Evaluate(), Register(), Promote(), Score())
STAGE_NAMES = tuple(stage.name for stage in STAGES)


def prepared_output(pipeline: Pipeline) -> dict[str, Any]:
    """What the prepare stage records of the pipeline's prepared data."""
    from trainpipe.run_log import dataset_of

    plan = pipeline.job_plan()
    prepared = plan.prepared
    dataset, input_tags = dataset_of(plan)
    return {
        "task": plan.task.name,
        "task_reason": plan.task_reason,
        "data_digest": prepared.digest,
        "split_digest": prepared.split_digest,
        "split_sizes": prepared.split_sizes(),
        "source": prepared.source,
        "dataset": dataset,
        "input_tags": input_tags,
    }


def champion_version(pipeline: Pipeline) -> Any | None:
    """The ModelVersion that is the champion now; None before the first promotion, or before
    the model's first registration."""
    from trainpipe.registry import RegistryError, champion

    try:
        return champion(pipeline.tracking_uri, pipeline.model_name)
    except RegistryError:  # no such registered model (yet)
        return None


def current_champion(pipeline: Pipeline) -> str | None:
    return _version_number(champion_version(pipeline))


def current_data_digest(pipeline: Pipeline) -> str:
    """The content digest of the configured data, as its prepared data will carry it (data
    whose digest is known only once loaded is prepared for that; other sources are digested
    from their files)."""
    if STAGES[0].always_runs(pipeline):
        return prepared_output(pipeline)["data_digest"]
    return pipeline.data_digest


def _version_number(version: Any) -> str | None:
    """A version number from a ModelVersion, a number or None."""
    if version is None:
        return None
    return str(getattr(version, "version", version))


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
