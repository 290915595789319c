"""The job's tracking journal: every MLflow write, first made durable on local disk.

`<output dir>/tracking/journal.jsonl` is append-only, one operation per line, each with a sequence
number; `cursor.json` records the last operation MLflow accepted and the run id it gave us. A
tracking server that is down, or a process that is killed, loses nothing: unsent operations are
replayed in order later (by the job itself, its next start, or `trainpipe sync`). Replays are
safe to repeat: metrics carry their original timestamps, so MLflow keeps one row per point.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from trainpipe.runtime.atomic import atomic_write_text

JOURNAL = "journal.jsonl"
CURSOR = "cursor.json"


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.entries: list[dict[str, Any]] = self._read()
        cursor = self._read_cursor()
        self.sent: int = cursor.get("sent", 0)
        self.run_id: str | None = cursor.get("run_id")
        # (metric key, step) pairs already journaled: a resumed job does not journal them twice
        self.metric_points: set[tuple[str, int]] = {
            (m[0], m[3]) for e in self.entries if e["op"] == "log" for m in e.get("metrics", [])
        }

    def _read(self) -> list[dict[str, Any]]:
        path = self.directory / JOURNAL
        if not path.is_file():
            return []
        entries, good_bytes = [], 0
        with open(path, "rb") as handle:
            for line in handle:
                if not line.endswith(b"\n"):
                    break  # a write cut short by a kill: drop it
                entries.append(json.loads(line))
                good_bytes += len(line)
        if good_bytes != path.stat().st_size:
            with open(path, "r+b") as handle:
                handle.truncate(good_bytes)
        return entries

    def _read_cursor(self) -> dict[str, Any]:
        path = self.directory / CURSOR
        return json.loads(path.read_text()) if path.is_file() else {}

    def append(self, *ops: dict[str, Any]) -> None:
        """Write operations durably (fsync) before anything else may depend on them."""
        with self._lock:
            seq = self.entries[-1]["seq"] if self.entries else 0
            lines = []
            for op in ops:
                seq += 1
                entry = {"seq": seq, **op}
                self.entries.append(entry)
                lines.append(json.dumps(entry, separators=(",", ":")) + "\n")
                for metric in op.get("metrics", []):
                    self.metric_points.add((metric[0], metric[3]))
            with open(self.directory / JOURNAL, "a") as handle:
                handle.write("".join(lines))
                handle.flush()
                os.fsync(handle.fileno())

    def unsent(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.entries if e["seq"] > self.sent]

    def has_op(self, name: str) -> bool:
        return any(e["op"] == name for e in self.entries)

    def mark_sent(self, seq: int, run_id: str | None = None) -> None:
        with self._lock:
            self.sent = seq
            if run_id is not None:
                self.run_id = run_id
            cursor = {"sent": self.sent, "run_id": self.run_id}
            atomic_write_text(self.directory / CURSOR, json.dumps(cursor))

    def metric_history(self) -> dict[str, list[tuple[int, float]]]:
        """Every journaled metric point, by key, sorted by step: what the run logged, whether or
        not it has reached MLflow yet (the model card's learning curves are drawn from it)."""
        history: dict[str, list[tuple[int, float]]] = {}
        with self._lock:
            for entry in self.entries:
                for key, value, _, step in entry.get("metrics", []) if entry["op"] == "log" else []:
                    history.setdefault(key, []).append((int(step), float(value)))
        return {key: sorted(points) for key, points in history.items()}
