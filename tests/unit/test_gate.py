"""The promotion gate's rule (registry/gate.py): pure logic, no MLflow."""

from __future__ import annotations

import math

import pytest

from trainpipe.errors import ConfigError
from trainpipe.registry.gate import Gate, judge
from trainpipe.tasks import get_task


@pytest.mark.parametrize(
    ("task", "metric", "direction"),
    [
        ("classification", "test/acc", "max"),
        ("regression", "test/rmse", "min"),
        # bits per byte: a test loss in nats per token is not comparable across tokenizers
        ("lm", "test/bpb", "min"),
    ],
)
def test_auto_is_the_tasks_gate_metric_on_the_test_split(
    task: str, metric: str, direction: str
) -> None:
    from trainpipe.tasks import get_task

    objective = get_task(task).objective
    gate = Gate().resolve(objective.gate_metric, objective.mode)
    assert (gate.metric, gate.direction) == (metric, direction)


def test_another_metric_takes_the_direction_its_task_declares_or_must_name_one() -> None:
    classification = get_task("classification").metric_directions
    assert Gate(metric="test/f1").resolve("val/acc", "max", classification).direction == "max"
    assert Gate(metric="test/loss").resolve("val/acc", "max", classification).direction == "min"
    regression = get_task("regression").metric_directions
    assert Gate(metric="test/r2").resolve("val/rmse", "min", regression).direction == "max"
    assert Gate(metric="test/mae").resolve("val/rmse", "min", regression).direction == "min"
    assert (
        Gate(metric="test/bpb")
        .resolve("val/loss", "min", get_task("lm").metric_directions)
        .direction
        == "min"
    )
    zeta = Gate(metric="test/zeta", direction="min")
    assert zeta.resolve("val/acc", "max", classification).direction == "min"
    with pytest.raises(ConfigError, match="registry.gate.direction"):
        Gate(metric="test/zeta").resolve("val/acc", "max", classification)
    with pytest.raises(ConfigError, match="registry.gate.direction"):  # not this task's metric
        Gate(metric="test/rmse").resolve("val/acc", "max", classification)


def test_max_direction_with_min_improvement() -> None:
    gate = Gate(min_improvement=0.05).resolve("val/acc", "max")
    assert judge(gate, {"test/acc": 0.90}, {"test/acc": 0.84}).passed
    refused = judge(gate, {"test/acc": 0.88}, {"test/acc": 0.84})
    assert not refused.passed
    assert "0.88" in refused.why and "0.84" in refused.why and "0.89" in refused.why  # the bar


def test_min_direction_and_ties() -> None:
    gate = Gate().resolve("val/rmse", "min")
    assert judge(gate, {"test/rmse": 1.0}, {"test/rmse": 1.2}).passed
    assert judge(gate, {"test/rmse": 1.2}, {"test/rmse": 1.2}).passed  # not worse: passes
    assert not judge(gate, {"test/rmse": 1.3}, {"test/rmse": 1.2}).passed
    strict = Gate(min_improvement=0.1).resolve("val/rmse", "min")
    assert judge(strict, {"test/rmse": 1.1}, {"test/rmse": 1.2}).passed
    assert not judge(strict, {"test/rmse": 1.15}, {"test/rmse": 1.2}).passed


def test_without_a_champion_only_the_floor_applies() -> None:
    assert judge(Gate().resolve("val/acc", "max"), {"test/acc": 0.1}, None).passed
    floored = Gate(floor=0.9).resolve("val/acc", "max")
    assert judge(floored, {"test/acc": 0.95}, None).passed
    refused = judge(floored, {"test/acc": 0.5}, None)
    assert not refused.passed and "floor 0.9" in refused.why
    # the floor holds with a champion too, even when the challenger beats it
    assert not judge(floored, {"test/acc": 0.85}, {"test/acc": 0.5}).passed
    assert not judge(Gate(floor=1.0).resolve("val/loss", "min"), {"test/loss": 1.5}, None).passed


def test_nan_and_missing_metrics() -> None:
    gate = Gate().resolve("val/acc", "max")
    assert not judge(gate, {"test/acc": math.nan}, None).passed
    assert not judge(gate, {"test/acc": 0.9}, {"test/loss": 0.1}).passed
    with pytest.raises(ConfigError, match="'test/acc' is not among the scores"):
        judge(gate, {"test/loss": 0.3}, None)


def test_config_overrides_and_validation() -> None:
    recorded = Gate.from_config(
        {"registry": {"gate": {"metric": "auto", "direction": "auto", "min_improvement": 0.02}}}
    )
    assert recorded == Gate(min_improvement=0.02)
    assert Gate.from_config(None) == Gate() == Gate.from_config({"registry": {}})
    assert recorded.with_overrides(floor=0.8, metric=None) == Gate(min_improvement=0.02, floor=0.8)
    with pytest.raises(ConfigError, match="registry.gate.min_improvement"):
        Gate(min_improvement=-0.1)
    with pytest.raises(ConfigError, match="registry.gate.direction"):
        Gate(direction="up")


def test_the_rule_reads_as_a_sentence() -> None:
    gate = Gate(min_improvement=0.01, floor=0.9).resolve("val/acc", "max")
    assert gate.describe() == "test/acc (max): challenger >= champion + 0.01, >= floor 0.9"
    assert Gate().resolve("val/loss", "min").describe() == "test/loss (min): challenger <= champion"


def test_a_champion_that_was_not_scored_is_not_called_no_champion() -> None:
    gate = Gate().resolve("test/acc", "max")
    verdict = judge(gate, {"test/acc": 0.8}, None, unscored="not compared with champion v1")
    assert verdict.passed and verdict.why == "not compared with champion v1; test/acc 0.8"
    assert judge(gate, {"test/acc": 0.8}, None).why.startswith("no champion to compare with")
