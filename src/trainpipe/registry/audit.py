"""The audit log of the registry lifecycle: every promote, rollback and retire, in order.

Each event is written (docs/registry.md, "Audit log"):
- as a line of the model's history `audit/<name>.jsonl`, an artifact of one run per registered
  model in the experiment `trainpipe-registry` (MLflow has no model-level artifacts). MLflow
  cannot append to an artifact: the history is read, the line appended, the file uploaded again;
- as one readable line in the tag `audit.latest` of the version it is about (replacing the one
  before): the UI shows a version's latest event next to it, not a JSON blob per event.

The history numbers the events (`seq` = the lines before it + 1); the tag starts with the number.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

AUDIT_EXPERIMENT = "trainpipe-registry"
MODEL_TAG = "trainpipe.registry.model"  # on the audit run: which registered model it logs
AUDIT_RUN_TAG = "trainpipe.audit_run_id"  # on the registered model: where its history is
LATEST_TAG = "audit.latest"  # on a version: its latest event, one line for people
ACTOR_ENV = "TRAINPIPE_ACTOR"


def resolve_actor(explicit: str | None = None) -> str:
    """Who acts: `explicit`, else $TRAINPIPE_ACTOR (CI, service accounts), else the login user."""
    if explicit:
        return explicit
    if os.environ.get(ACTOR_ENV):
        return os.environ[ACTOR_ENV]
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:  # no login name (some containers)
        return "unknown"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def compact(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


class AuditLog:
    """The audit history of one registered model."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name
        # model names may hold characters a file name should not
        self.file_name = re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".jsonl"

    def read(self) -> list[dict[str, Any]]:
        """The events in the order they happened (empty before the first one)."""
        run_id = self._run_id(create=False)
        text = self._download(run_id) if run_id else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def append(self, event: dict[str, Any]) -> dict[str, Any]:
        """Number and time-stamp `event` (which names its `version`), add it to the history, tag
        the version with it as text; returns the event as recorded."""
        run_id = self._run_id(create=True)
        old = self._download(run_id)
        seq = sum(1 for line in old.splitlines() if line.strip()) + 1
        recorded = {"seq": seq, "time": utc_now(), **event}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / self.file_name
            # the old lines byte for byte, then the new one: the history is only ever appended
            path.write_text(old + compact(recorded) + "\n", encoding="utf-8")
            self.client.log_artifact(run_id, str(path), "audit")
        # (a tag value holds 5,000 characters; the history holds the whole event)
        latest = describe(recorded)[:5000]
        self.client.set_model_version_tag(self.name, event["version"], LATEST_TAG, latest)
        return recorded

    def _download(self, run_id: str) -> str:
        present = {a.path for a in self.client.list_artifacts(run_id, "audit")}
        if f"audit/{self.file_name}" not in present:
            return ""
        with tempfile.TemporaryDirectory() as tmp:
            local = self.client.download_artifacts(run_id, f"audit/{self.file_name}", tmp)
            return Path(local).read_text(encoding="utf-8")

    def _run_id(self, create: bool) -> str | None:
        """The model's audit run (the oldest, should two have been created at once)."""
        from trainpipe.tracking.replay import get_or_create_experiment

        experiment = self.client.get_experiment_by_name(AUDIT_EXPERIMENT)
        if experiment is None and not create:
            return None
        if create:  # (restored, should someone have deleted it)
            experiment_id = get_or_create_experiment(self.client, AUDIT_EXPERIMENT)
        else:
            experiment_id = experiment.experiment_id
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{MODEL_TAG}` = '{self.name}'",
            order_by=["attributes.start_time ASC"],
            max_results=1,
        )
        if runs:
            return runs[0].info.run_id
        if not create:
            return None
        run = self.client.create_run(experiment_id, tags={MODEL_TAG: self.name}, run_name=self.name)
        self.client.set_terminated(run.info.run_id, "FINISHED")
        self.client.set_registered_model_tag(self.name, AUDIT_RUN_TAG, run.info.run_id)
        return run.info.run_id


def describe(event: dict[str, Any]) -> str:
    """One line for people: a line of `trainpipe models history`, the `audit.latest` tag."""
    what = f"{event['action']} v{event['version']}"
    if event["action"] in ("promote", "rollback"):
        what += f" (champion {event.get('champion_before') or '—'} → {event['version']})"
    parts = [f"{event['seq']:04d}", event["time"], event["actor"], what]
    if event.get("forced"):
        parts.append("FORCED")
    gate = event.get("gate")
    if gate:
        parts.append(gate["result"])
    if event.get("reason"):
        parts.append(f"reason: {event['reason']}")
    return "  ".join(parts)
