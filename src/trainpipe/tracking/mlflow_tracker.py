"""One MLflow run per job, written from rank 0 only; tracking trouble never stops training.

Every write goes to the job's journal on local disk first (journal.py) and a background thread
replays it to MLflow (replay.py), retrying with backoff while the store is unreachable. Metrics
are held in memory until `commit(step)`, which the resume-checkpoint callback calls right before
it saves: a job killed and resumed from step S therefore journals each metric point exactly once
(points it already journaled are not journaled again when the resumed job recomputes them).
Runs nested under the job's (`start_nested`, the pipeline's stages) are sent by the same thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from trainpipe.runtime.failures import FAILURE_REASON_TAG
from trainpipe.runtime.tracker import Tracker
from trainpipe.tracking.journal import Journal
from trainpipe.tracking.replay import Replayer, drain

log = logging.getLogger(__name__)


class MLflowTracker(Tracker):
    """The job's MLflow run: params, tags, metrics, artifacts, the registered model, the final status."""

    tracked = True

    def __init__(
        self,
        tracking_uri: str | None,
        experiment_name: str,
        flush_interval_s: float = 2.0,
        drain_timeout_s: float = 30.0,
        hold_metrics_until_commit: bool = False,
    ) -> None:
        # fail fast on an unreachable server and let our own backoff retry (MLflow's default
        # HTTP retries would stall the caller for minutes)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        self.tracking_uri = (
            tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
        )
        self.experiment_name = experiment_name
        self.flush_interval_s = flush_interval_s
        self.drain_timeout_s = drain_timeout_s
        self.hold_metrics_until_commit = hold_metrics_until_commit
        self.journal: Journal | None = None
        self.replayer: Replayer | None = None
        self._held: list[list[Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # nested runs (`start_nested`) send through this tracker's writer thread, one at a time
        self._owner: MLflowTracker | None = None
        self._nested: list[MLflowTracker] = []
        self._sending = threading.Lock()

    @property
    def run_id(self) -> str | None:
        return self.journal.run_id if self.journal is not None else None

    # -- run lifecycle ---------------------------------------------------------------------
    def start(
        self, run_name: str, tags: dict[str, str], journal_dir: Path, connect_timeout_s: float = 5.0
    ) -> str | None:
        """Open (or reopen) the job's journal and run; returns the run id if MLflow answered in time."""
        self.journal = Journal(journal_dir)
        self.replayer = Replayer(self.journal, self.tracking_uri)
        if not self.journal.has_op("create_run"):
            key = uuid.uuid4().hex
            create = {
                "op": "create_run",
                "experiment": self.experiment_name,
                "run_name": run_name,
                "tags": tags,
                "key": key,
            }
            self.journal.append({**create, "tracking_uri": absolute_uri(self.tracking_uri)})
        else:
            self.journal.append({"op": "status", "status": "RUNNING"}, {"op": "log", "tags": tags})
        drain(self.replayer, connect_timeout_s)
        if self.run_id is None:
            log.warning(
                "MLflow at %s is not answering; tracking goes to %s and is sent when it is back",
                self.tracking_uri,
                journal_dir,
            )
        if self._owner is not None:
            with self._owner._lock:
                self._owner._nested.append(self)
        else:
            self._thread = threading.Thread(target=self._writer, name="mlflow-writer", daemon=True)
            self._thread.start()
        return self.run_id

    def start_nested(self, run_name: str, tags: dict[str, str], journal_dir: Path) -> MLflowTracker:
        """A run nested under this one (the pipeline's stages under its parent run), with a
        journal of its own (a journal holds one run) sent by this tracker's writer thread."""
        nested = MLflowTracker(
            self.tracking_uri, self.experiment_name, self.flush_interval_s, self.drain_timeout_s
        )
        nested._owner, nested._wake = self, self._wake  # its commits wake the one writer
        nested.start(run_name, {**tags, "mlflow.parentRunId": str(self.run_id)}, journal_dir)
        return nested

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> int:
        """Commit every metric, close the run with `status`, and try to send it all; returns ops left."""
        if self.journal is None:
            return 0
        self.commit()
        tags = {FAILURE_REASON_TAG: reason[:5000]} if reason else {}
        self.journal.append({"op": "log", "tags": tags}, {"op": "status", "status": status})
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self._owner is not None:
            with self._owner._lock:
                self._owner._nested.remove(self)
        with self._sending:  # the owner's writer may be sending this run's journal right now
            left = drain(self.replayer, self.drain_timeout_s)
        if left:
            log.warning(
                "%d tracking operation(s) could not reach MLflow (%s); they are kept in %s and sent by "
                "the next start of this job or `trainpipe sync %s`",
                left, self.tracking_uri, self.journal.directory, self.journal.directory.parent,
            )  # fmt: skip
        return left

    # -- what gets logged -----------------------------------------------------------------
    def log_params(self, params: dict[str, str]) -> None:
        self.journal.append({"op": "log", "params": params})

    def set_tags(self, tags: dict[str, str]) -> None:
        self.journal.append({"op": "log", "tags": {k: str(v)[:5000] for k, v in tags.items()}})

    def delete_tags(self, keys: tuple[str, ...]) -> None:
        self.journal.append({"op": "delete_tags", "keys": list(keys)})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.journal.append(
            {"op": "artifact", "path": str(Path(path).resolve()), "artifact_path": artifact_path}
        )

    def register_model(self, package: Path, model_name: str, version_tags: dict[str, str]) -> None:
        self.journal.append(
            {
                "op": "register",
                "package": str(Path(package).resolve()),
                "model_name": model_name,
                "version_tags": version_tags,
            }
        )

    def set_alias(self, model_name: str, alias: str, version: str | None = None) -> None:
        self.journal.append(
            {"op": "alias", "model_name": model_name, "alias": alias, "version": version}
        )

    def log_input(self, dataset: dict[str, str], tags: dict[str, str]) -> None:
        """A dataset the run used (`mlflow.log_input`): `dataset` holds the fields of MLflow's
        Dataset (name, digest, source_type, source, schema, profile), `tags` the input's tags
        (`mlflow.data.context`, …). Shown in the Datasets section of the run's page."""
        self.journal.append({"op": "input", "dataset": dataset, "tags": tags})

    def set_version_tags(self, model_name: str, version: str, tags: dict[str, str]) -> None:
        """Tags on an existing registered version (e.g. the pipeline run that evaluated it)."""
        self.journal.append(
            {"op": "version_tags", "model_name": model_name, "version": version, "tags": tags}
        )

    def metric_history(self) -> dict[str, list[tuple[int, float]]]:
        """The metric points journaled so far, by key (held ones are committed first)."""
        if self.journal is None:
            return {}
        self.commit()
        return self.journal.metric_history()

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        with self._lock:
            self._held.extend([key, float(value), now, step] for key, value in metrics.items())

    def commit(self, up_to_step: int | None = None) -> None:
        """Journal the held metrics of steps <= `up_to_step` (all if None), skipping points already journaled."""
        if self.journal is None:
            return
        with self._lock:
            ready = [m for m in self._held if up_to_step is None or m[3] <= up_to_step]
            self._held = [m for m in self._held if not (up_to_step is None or m[3] <= up_to_step)]
        fresh = [m for m in ready if (m[0], m[3]) not in self.journal.metric_points]
        if fresh:
            self.journal.append({"op": "log", "metrics": fresh})
            self._wake.set()

    def _writer(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            if not self.hold_metrics_until_commit:
                self.commit()
            with self._sending:
                drain(self.replayer, self.flush_interval_s, stop=self._stop)
            with self._lock:
                nested = list(self._nested)
            for run in nested:
                run.commit()
                with run._sending:
                    drain(run.replayer, 0)  # one try each pass: a retry is the next pass

    def registered_version(self, model_name: str) -> str | None:
        from trainpipe.tracking.model_versions import registered_version

        if self.run_id is None:
            return None
        return registered_version(self.tracking_uri, model_name, self.run_id)

    def lightning_logger(self) -> Any:
        from trainpipe.tracking.lightning_logger import TrackerLogger

        return TrackerLogger(self)


class NullTracker(Tracker):
    """`logger=none` (and every rank but 0): the Tracker protocol's own do-nothing behaviour."""

    def __init__(self, **_: Any) -> None:
        pass

    def lightning_logger(self) -> Any:
        # callbacks such as LearningRateMonitor require a logger, even one that records nothing
        from trainpipe.tracking.lightning_logger import TrackerLogger

        return TrackerLogger(self)


def absolute_uri(uri: str) -> str:
    """A sqlite URI relative to the working directory, made absolute (so `trainpipe sync` works anywhere)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def sync(
    output_dir: Path, tracking_uri: str | None = None, deadline_s: float = 60.0
) -> tuple[int, Journal]:
    """`trainpipe sync`: send a job's unsent tracking operations; returns (operations left, journal)."""
    journal_dir = Path(output_dir) / "tracking"
    if not (journal_dir / "journal.jsonl").is_file():
        raise FileNotFoundError(f"{output_dir} has no tracking journal (tracking/journal.jsonl)")
    journal = Journal(journal_dir)
    uri = (
        tracking_uri
        or journal.entries[0].get("tracking_uri")
        or os.environ.get("MLFLOW_TRACKING_URI")
        or "sqlite:///mlflow.db"
    )
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return drain(Replayer(journal, uri), deadline_s), journal
