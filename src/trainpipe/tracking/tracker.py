"""One MLflow run per job, written from rank 0 only; tracking trouble never stops training.

Metrics are buffered and written by a background thread in batches (an sqlite commit per step
would cost more than a small training step). A failed write keeps its metrics for the next try.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# MLflow accepts at most 1000 metrics per log_batch call
BATCH_LIMIT = 1000


class MLflowTracker:
    """The job's MLflow run: params, tags, buffered metrics, artifacts and the final status."""

    enabled = True

    def __init__(
        self, tracking_uri: str | None, experiment_name: str, flush_interval_s: float = 2.0
    ) -> None:
        import mlflow

        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        self.experiment_name = experiment_name
        self.flush_interval_s = flush_interval_s
        self.client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._pending: list[Any] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- run lifecycle ---------------------------------------------------------------------
    def start(self, run_name: str, tags: dict[str, str], run_id: str | None = None) -> str:
        """Create the run (or continue `run_id`) and start the background writer."""
        self.experiment_id = self._experiment_id()
        if run_id is None:
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
            self.run_id = run.info.run_id
        else:
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
            self._safe(lambda: self.client.log_batch(run_id, tags=self._tag_entities(tags)))
        self._thread = threading.Thread(target=self._writer, name="mlflow-writer", daemon=True)
        self._thread.start()
        return self.run_id

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        try:
            return self.client.create_experiment(self.experiment_name)
        except Exception:  # another job created it between our lookup and create
            found = self.client.get_experiment_by_name(self.experiment_name)
            if found is None:
                raise
            return found.experiment_id

    def detach(self) -> None:
        """Stop the background writer and flush, leaving the run open (e.g. a sweep's parent)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.flush()

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """Flush everything and close the run with `status` (FINISHED, FAILED or KILLED)."""
        if self.run_id is None:
            return
        self.detach()
        if reason:
            self._safe(
                lambda: self.client.set_tag(self.run_id, "trainpipe.failure_reason", reason[:5000])
            )
        self._safe(lambda: self.client.set_terminated(self.run_id, status=status))

    # -- what gets logged -----------------------------------------------------------------
    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow's per-call param limit
            self._safe(
                lambda chunk=items[start : start + 100]: self.client.log_batch(
                    self.run_id, params=chunk
                )
            )

    def set_tags(self, tags: dict[str, str]) -> None:
        self._safe(lambda: self.client.log_batch(self.run_id, tags=self._tag_entities(tags)))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        with self._lock:
            self._pending.extend(Metric(k, float(v), now, step) for k, v in metrics.items())
            full = len(self._pending) >= BATCH_LIMIT
        if full:
            self._wake.set()

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._safe(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def flush(self) -> bool:
        """Write buffered metrics now; False (metrics kept for later) if the store did not take them."""
        with self._lock:
            batch, self._pending = self._pending, []
        for start in range(0, len(batch), BATCH_LIMIT):
            chunk = batch[start : start + BATCH_LIMIT]
            if not self._safe(
                lambda chunk=chunk: self.client.log_batch(self.run_id, metrics=chunk)
            ):
                with self._lock:
                    self._pending[:0] = batch[start:]
                return False
        return True

    def _writer(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self.flush()

    # -- helpers --------------------------------------------------------------------------
    @staticmethod
    def _tag_entities(tags: dict[str, str]) -> list[Any]:
        from mlflow.entities import RunTag

        return [RunTag(k, str(v)[:5000]) for k, v in tags.items()]

    def _safe(self, call: Any) -> bool:
        try:
            call()
            return True
        except Exception as err:  # tracking must never take training down
            log.warning(
                "MLflow (%s) call failed, training continues: %s",
                self.tracking_uri,
                str(err).splitlines()[0],
            )
            return False

    def ui_command(self) -> str:
        return f"mlflow ui --backend-store-uri {self.tracking_uri}"

    def lightning_logger(self) -> Any:
        from trainpipe.tracking.lightning_logger import TrackerLogger

        return TrackerLogger(self)


class NullTracker:
    """`logger=none`: the same interface, records nothing (and so registers nothing)."""

    enabled = False
    run_id: str | None = None
    tracking_uri = None
    experiment_name = "none"

    def __init__(self, **_: Any) -> None:
        pass

    def start(self, run_name: str, tags: dict[str, str], run_id: str | None = None) -> None:
        return None

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
        pass

    def log_params(self, params: dict[str, str]) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        pass

    def flush(self) -> bool:
        return True

    def lightning_logger(self) -> Any:
        # a logger that records nothing: callbacks such as LearningRateMonitor require one
        from trainpipe.tracking.lightning_logger import TrackerLogger

        return TrackerLogger(self)
