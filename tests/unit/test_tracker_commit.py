"""Metrics reach MLflow once each, even across a kill and resume: the tracker holds them until the
checkpoint covering their step is written (commit), and never journals a point twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow

from trainpipe.tracking import MLflowTracker


def journaled_steps(journal_dir: Path) -> list[int]:
    lines = (journal_dir / "journal.jsonl").read_text().splitlines()
    return [m[3] for e in map(json.loads, lines) if e["op"] == "log" for m in e.get("metrics", [])]


def test_commit_journals_held_metrics_up_to_the_checkpoint_step_once(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    journal = tmp_path / "out" / "tracking"
    first = MLflowTracker(uri, "commit", hold_metrics_until_commit=True, drain_timeout_s=5)
    run_id = first.start("job", {}, journal)
    for step in range(1, 7):
        first.log_metrics({"train/loss": 1.0 / step}, step=step)
    first.commit(3)  # the checkpoint of step 3 is about to be written
    assert journaled_steps(journal) == [1, 2, 3]
    # killed here: steps 4-6 were never journaled; the resumed job recomputes from step 3 and
    # logs steps 2-3 again (its first window), which must not be journaled twice
    resumed = MLflowTracker(uri, "commit", hold_metrics_until_commit=True, drain_timeout_s=5)
    assert resumed.start("job", {}, journal) == run_id
    for step in range(2, 8):
        resumed.log_metrics({"train/loss": 1.0 / step}, step=step)
    assert resumed.finish("FINISHED") == 0
    assert sorted(journaled_steps(journal)) == [1, 2, 3, 4, 5, 6, 7]
    history = mlflow.MlflowClient(uri).get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5, 6, 7]
    assert mlflow.MlflowClient(uri).get_run(run_id).info.status == "FINISHED"


def test_a_sqlite_store_keeps_artifacts_beside_the_database_whatever_the_cwd(
    tmp_path: Path, monkeypatch: Any
) -> None:
    store, elsewhere = tmp_path / "store", tmp_path / "elsewhere"
    store.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    uri = f"sqlite:///{store}/mlflow.db"
    tracker = MLflowTracker(uri, "wine / v2", drain_timeout_s=5)
    run_id = tracker.start("job", {}, tmp_path / "journal")
    note = tmp_path / "a.txt"
    note.write_text("hello")
    tracker.log_artifact(note, "notes")
    assert tracker.finish("FINISHED") == 0
    assert (store / "mlruns" / "wine_v2" / run_id / "artifacts" / "notes" / "a.txt").is_file()
    assert not (elsewhere / "mlruns").exists()


class Recorder:
    """A tracking backend that is not MLflow: told apart by what it declares, not by its name."""

    tracked = True

    def __init__(self, **_: Any) -> None:
        pass


def test_whether_a_job_is_tracked_is_what_its_tracker_class_declares() -> None:
    from omegaconf import OmegaConf

    from trainpipe.config.identity import run_identity
    from trainpipe.config.targets import declared
    from trainpipe.tracking import NullTracker

    def identity(target: str) -> str:
        return run_identity(OmegaConf.create({"logger": {"_target_": target}, "model": {}}))

    mlflow_target, none_target = (
        MLflowTracker.__module__ + ".MLflowTracker",
        "trainpipe.tracking.NullTracker",
    )
    recorder = f"{__name__}.Recorder"
    assert [
        declared({"_target_": t}, "logger", "tracked")
        for t in (mlflow_target, recorder, none_target)
    ] == [True, True, False]
    assert identity(recorder) == identity(mlflow_target) != identity(none_target)
    # the registry half of the protocol has do-nothing defaults: a stage may tag a version
    # through any tracker
    assert NullTracker().set_version_tags("model", "1", {"trainpipe.pipeline": "x"}) is None


def test_nested_runs_are_sent_by_their_parent_trackers_one_writer(tmp_path: Path) -> None:
    import threading

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    writers = {t for t in threading.enumerate() if t.name == "mlflow-writer"}
    parent = MLflowTracker(uri, "nested", flush_interval_s=0.1, drain_timeout_s=5)
    parent_id = parent.start("pipeline", {}, tmp_path / "tracking")
    stages = [parent.start_nested(s, {"stage": s}, tmp_path / "tracking" / s) for s in "ab"]
    for step, stage in enumerate(stages):
        stage.log_metrics({"loss": 1.0}, step=step)
    started = {t for t in threading.enumerate() if t.name == "mlflow-writer"} - writers
    assert len(started) == 1  # the parent's: the nested runs start no thread of their own
    assert [s.finish("FINISHED") for s in stages] == [0, 0]
    assert parent.finish("FINISHED") == 0
    client = mlflow.MlflowClient(uri)
    for stage in stages:
        run = client.get_run(stage.run_id)
        assert run.data.tags["mlflow.parentRunId"] == parent_id
        assert run.info.status == "FINISHED" and run.data.metrics == {"loss": 1.0}
