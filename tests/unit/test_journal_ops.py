"""The journal's lineage operations (a dataset input, tags on a registered version) reach a real
sqlite MLflow store, and replaying them again — what happens after a crash between applying an
operation and marking it sent — changes nothing."""

from __future__ import annotations

from pathlib import Path

import mlflow

from trainpipe.tracking import MLflowTracker
from trainpipe.tracking.journal import CURSOR
from trainpipe.tracking.lineage import dataset_input
from trainpipe.tracking.mlflow_tracker import sync


def test_inputs_and_version_tags_are_journaled_and_replay_idempotently(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    client.create_registered_model("m")
    journal = tmp_path / "job" / "tracking"
    tracker = MLflowTracker(uri, "lineage", drain_timeout_s=5)
    run_id = tracker.start("job", {}, journal)
    client.create_model_version("m", "file:///nowhere", run_id=run_id)
    dataset, tags = dataset_input(
        "rows", "0123456789abcdef", "rows.csv", "csv", [], {"train": 3, "test": 1}, "fedcba"
    )
    tracker.log_input(dataset, tags)
    tracker.set_version_tags("m", "1", {"trainpipe.pipeline.run_id": "p1"})
    tracker.log_metrics({"train/loss": 2.0}, step=1)
    tracker.log_metrics({"train/loss": 1.0}, step=2)
    assert tracker.metric_history() == {"train/loss": [(1, 2.0), (2, 1.0)]}
    assert tracker.finish() == 0

    (journal / CURSOR).unlink()  # as if nothing had been marked sent: everything is replayed
    left, _ = sync(journal.parent, uri, deadline_s=10)
    assert left == 0
    (entry,) = client.get_run(run_id).inputs.dataset_inputs
    assert (entry.dataset.name, entry.dataset.digest) == ("rows", "0123456789abcdef")
    assert {t.key: t.value for t in entry.tags}["trainpipe.rows.train"] == "3"
    assert client.get_model_version("m", "1").tags == {"trainpipe.pipeline.run_id": "p1"}
    assert len(client.get_metric_history(run_id, "train/loss")) == 2


def test_the_challenger_alias_is_a_journaled_registry_operation(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    client.create_registered_model("m")
    journal = tmp_path / "job" / "tracking"
    tracker = MLflowTracker(uri, "aliases", drain_timeout_s=5)
    run_id = tracker.start("job", {}, journal)
    client.create_model_version("m", "file:///nowhere", run_id=run_id)  # what `register` makes
    tracker.set_alias("m", "challenger")  # this run's version
    tracker.set_alias("m", "baseline", "1")
    assert tracker.finish() == 0
    # (the sqlite store gives version numbers as ints)
    assert client.get_registered_model("m").aliases == {"challenger": 1, "baseline": 1}

    # a version registered since by another job is the challenger: replaying this job's
    # journal (a crash before its ops were marked sent) does not take the alias back
    client.create_model_version("m", "file:///elsewhere", run_id=None)
    client.set_registered_model_alias("m", "challenger", "2")
    (journal / CURSOR).unlink()
    left, _ = sync(journal.parent, uri, deadline_s=10)
    assert left == 0
    assert client.get_registered_model("m").aliases == {"challenger": 2, "baseline": 1}
    # the registry half of the protocol does nothing by default (logger=none)
    from trainpipe.tracking import NullTracker

    assert NullTracker().set_alias("m", "challenger") is None
