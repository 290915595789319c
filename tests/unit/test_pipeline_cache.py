"""The pipeline's pure parts: stage keys, the stage cache on disk, the command-line split, and
how `reproduce` turns a recorded config back into one that writes to new places."""

from __future__ import annotations

from pathlib import Path

from trainpipe.commands.reproduce import unresolve_paths
from trainpipe.pipeline.cache import CacheEntry, StageCache, stage_key
from trainpipe.pipeline.context import split_overrides

BASE = {
    "stage": "evaluate",
    "data_digest": "d43ae95ca6935ccc",
    "config": {"batch_size": 256, "device": "cpu"},
    "code_version": "trainpipe 0.1.0 @ abc123",
    "tracking_uri": "sqlite:////tmp/mlflow.db",
}


def entry(key: str = "k1", output: dict | None = None, stage: str = "train") -> CacheEntry:
    return CacheEntry(
        stage, key, output or {"version": "1"}, "run1", "pipe1", "2026-01-01T00:00:00"
    )


def key(upstream: CacheEntry | None = None, **changes: object) -> str:
    inputs = {**BASE, **changes}
    return stage_key(upstream=upstream, **inputs)  # type: ignore[arg-type]


def test_a_key_is_stable_and_ignores_the_order_of_config_keys() -> None:
    assert key() == key()
    assert key(config={"device": "cpu", "batch_size": 256}) == key()
    assert len(key()) == 16


def test_every_input_changes_the_key() -> None:
    changed = [
        key(stage="register"),
        key(data_digest="0000000000000000"),
        key(config={"batch_size": 128, "device": "cpu"}),
        key(code_version="trainpipe 0.1.0 @ abc123+dirty"),
        key(tracking_uri="http://mlflow:5000"),
        key(upstream=entry()),
    ]
    assert len({key(), *changed}) == len(changed) + 1


def test_the_upstream_key_and_output_both_reach_downstream_keys() -> None:
    # a change upstream reruns everything after it, even when its output happens to be equal
    same_output_other_key = key(upstream=entry(key="k2"))
    other_output = key(upstream=entry(output={"version": "2"}))
    assert len({key(upstream=entry()), same_output_other_key, other_output}) == 3


def test_the_cache_round_trips_and_treats_an_unreadable_entry_as_a_miss(tmp_path: Path) -> None:
    cache = StageCache(tmp_path / "cache")
    assert cache.get("train", "k1") is None
    written = entry()
    path = cache.put(written)
    assert path == tmp_path / "cache" / "train" / "k1.json"
    assert cache.get("train", "k1") == written
    assert cache.get("train", "k2") is None
    path.write_text("{not json")
    assert cache.get("train", "k1") is None


def test_pipeline_keys_are_split_from_training_overrides() -> None:
    args = ["trainer.max_epochs=3", "pipeline.evaluate.batch_size=64", "data=csv", "+pipeline.x=1"]
    assert split_overrides(args) == (
        ["trainer.max_epochs=3", "data=csv"],
        ["pipeline.evaluate.batch_size=64", "+pipeline.x=1"],
    )


def test_a_recorded_config_points_at_new_paths_again() -> None:
    recorded = {
        "seed": 7,
        "data": {"path": "rows.csv", "cache_dir": "./.trainpipe_cache"},
        "callbacks": {"ckpt": {"dirpath": "/runs/outputs/train/x/job/checkpoints"}},
        "names": ["/runs/outputs/train/x/job", "other"],
        "paths": {
            "root_dir": ".",
            "log_dir": "/runs/outputs",
            "output_dir": "/runs/outputs/train/x/job",
            "cache_dir": "./.trainpipe_cache",
        },
    }
    assert unresolve_paths(recorded) == {
        "seed": 7,
        "data": {"path": "rows.csv", "cache_dir": "${paths.cache_dir}"},
        "callbacks": {"ckpt": {"dirpath": "${paths.output_dir}/checkpoints"}},
        "names": ["${paths.output_dir}", "other"],
    }


def test_stages_are_objects_in_order_and_data_known_only_once_loaded_is_prepared_every_time() -> (
    None
):
    from types import SimpleNamespace

    from trainpipe.pipeline.stages import STAGE_NAMES, STAGES

    assert STAGE_NAMES == ("prepare", "train", "evaluate", "register", "promote", "score")
    # score is off unless turned on, and needs promote (it scores with the champion)
    settings = {"promote": {"enabled": True}, "score": {"enabled": False}}
    assert [s.name for s in STAGES if s.enabled(SimpleNamespace(settings=settings))] == list(
        STAGE_NAMES[:-1]
    )
    settings = {"promote": {"enabled": False}, "score": {"enabled": True}}
    assert not STAGES[-1].enabled(SimpleNamespace(settings=settings))
    prepare = STAGES[0]
    data = {"data": {"source": "csv", "path": "rows.csv", "batch_size": 8, "num_workers": 2}}
    csv = SimpleNamespace(conf={**data, "task": "auto"})
    assert not prepare.always_runs(csv)
    assert prepare.always_runs(SimpleNamespace(conf={"data": {"source": "hub"}}))
    # how batches are served is not part of what is prepared
    assert prepare.config(csv)["data"] == {"source": "csv", "path": "rows.csv"}
