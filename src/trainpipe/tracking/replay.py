"""Send journaled operations to MLflow, in order, each at most once as far as MLflow can tell.

Each operation is idempotent against the store: runs are found again by a key tag before one is
created, metrics keep their journaled timestamps (MLflow keeps one row per identical point),
params and tags are re-sent with the same value, a dataset input is linked to a run once, and a
model is registered only if the run has no version yet, and `challenger` is never moved back
from a newer version. So an operation that was applied but
not yet marked sent can safely be applied again.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from trainpipe.tracking.journal import Journal

log = logging.getLogger(__name__)

RUN_KEY_TAG = "trainpipe.run_key"
# MLflow 3's UI opens an experiment on its GenAI overview unless it is marked as model training
# (the values its UI sets: genai_development | custom_model_development)
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


class Replayer:
    """Applies a journal's unsent operations to one tracking store."""

    def __init__(self, journal: Journal, tracking_uri: str) -> None:
        import mlflow

        self.journal = journal
        self.tracking_uri = tracking_uri
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri)

    def send_pending(self) -> int:
        """Apply unsent operations until one fails; returns how many are still unsent."""
        pending = self.journal.unsent()
        for index, entry in enumerate(pending):
            if entry["op"] != "create_run" and self.journal.run_id is None:
                return len(pending) - index  # cannot happen in a well-formed journal
            run_id = self._apply(entry)
            self.journal.mark_sent(entry["seq"], run_id)
        return 0

    def _apply(self, entry: dict[str, Any]) -> str | None:
        op = entry["op"]
        run_id = self.journal.run_id
        if op == "create_run":
            return self._create_run(entry)
        if op == "log":
            self._log(run_id, entry)
        elif op == "artifact":
            self.client.log_artifact(run_id, entry["path"], entry.get("artifact_path"))
        elif op == "status":
            if entry["status"] == "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
            else:
                self.client.set_terminated(run_id, status=entry["status"])
        elif op == "register":
            self._register(run_id, entry)
        elif op == "alias":
            self._set_alias(run_id, entry)
        elif op == "input":
            self._log_input(run_id, entry)
        elif op == "version_tags":
            for key, value in entry["tags"].items():
                self.client.set_model_version_tag(entry["model_name"], entry["version"], key, value)
        elif op == "delete_tags":
            present = self.client.get_run(run_id).data.tags
            for key in entry["keys"]:
                if key in present:
                    self.client.delete_tag(run_id, key)
        else:
            raise ValueError(f"unknown journal operation {op!r}")
        return None

    def _create_run(self, entry: dict[str, Any]) -> str:
        experiment_id = get_or_create_experiment(self.client, entry["experiment"])
        found = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{entry['key']}'"
        )
        if found:
            return found[0].info.run_id
        tags = {**entry["tags"], RUN_KEY_TAG: entry["key"]}
        return self.client.create_run(
            experiment_id, run_name=entry["run_name"], tags=tags
        ).info.run_id

    def _log(self, run_id: str, entry: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        params = [Param(k, v) for k, v in entry.get("params", {}).items()]
        tags = [RunTag(k, v) for k, v in entry.get("tags", {}).items()]
        metrics = [Metric(k, v, ts, step) for k, v, ts, step in entry.get("metrics", [])]
        # MLflow's per-call limits: 100 params, 100 tags, 1000 metrics
        for start in range(0, len(params), 100):
            self.client.log_batch(run_id, params=params[start : start + 100])
        for start in range(0, len(tags), 100):
            self.client.log_batch(run_id, tags=tags[start : start + 100])
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[start : start + 1000])

    def _log_input(self, run_id: str, entry: dict[str, Any]) -> None:
        # MLflow links a (name, digest) dataset to a run once: a replayed input is not doubled
        from mlflow.entities import Dataset, DatasetInput, InputTag

        tags = [InputTag(k, v) for k, v in entry["tags"].items()]
        self.client.log_inputs(run_id, [DatasetInput(Dataset(**entry["dataset"]), tags)])

    def _register(self, run_id: str, entry: dict[str, Any]) -> None:
        from trainpipe.tracking.model_versions import log_and_register

        name = entry["model_name"]
        if self.client.search_model_versions(f"name='{name}' and run_id='{run_id}'"):
            return  # registered before the process died
        log_and_register(
            self.tracking_uri, run_id, entry["model_name"], entry["package"], entry["version_tags"]
        )

    def _set_alias(self, run_id: str, entry: dict[str, Any]) -> None:
        from trainpipe.tracking.model_versions import CHALLENGER

        name, version = entry["model_name"], entry["version"]
        if version is None:  # the version this run registered (the op before, in the journal)
            mine = self.client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
            if not mine:
                raise RuntimeError(f"run {run_id} has no version of {name} to alias")
            version = str(mine[0].version)
        if entry["alias"] == CHALLENGER:  # the newest registered version: a late replay of an
            # older job's journal must not take it back from a version registered since
            newest = max(
                int(v.version) for v in self.client.search_model_versions(f"name='{name}'")
            )
            if int(version) < newest:
                return
        self.client.set_registered_model_alias(name, entry["alias"], str(version))


def get_or_create_experiment(client: Any, name: str) -> str:
    """The id of experiment `name`, created (or restored from deleted) if needed; safe under races."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        for key, value in EXPERIMENT_KIND.items():
            if key not in found.tags:  # a kind someone chose in the UI stays
                client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id
    try:
        return client.create_experiment(
            name, artifact_location=artifact_location(client, name), tags=EXPERIMENT_KIND
        )
    except Exception:  # created by another job between our lookup and create
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def drain(replayer: Replayer, deadline_s: float, stop: Any = None) -> int:
    """Retry with backoff until the journal is sent or `deadline_s` passes; returns what is left."""
    delay, started = 0.5, time.monotonic()
    while True:
        try:
            left = replayer.send_pending()
        except Exception as err:
            left = len(replayer.journal.unsent())
            log.warning(
                "MLflow (%s) unavailable, %d tracking operation(s) kept: %s",
                replayer.tracking_uri,
                left,
                _first_line(err),
            )
        if left == 0:
            return 0
        remaining = deadline_s - (time.monotonic() - started)
        if remaining <= 0 or (stop is not None and stop.is_set()):
            return left
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 30.0)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def artifact_location(client: Any, experiment: str) -> str | None:
    """Where a new experiment's artifacts go: beside the database for a sqlite store.

    MLflow's default is `./mlruns` of whichever directory the process happens to run in, so one
    store's artifacts would scatter across directories (and a run started elsewhere could not
    find them). Other stores (a server, its proxied artifacts) keep MLflow's default.
    """
    uri = str(client.tracking_uri)
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///")).resolve()
    folder = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("_") or "experiment"
    return (database.parent / "mlruns" / folder).as_uri()
