"""The promotion gate: the rule a challenger's test scores must pass to become the champion.

Pure logic (no MLflow, no torch): `Gate` is the `registry.gate` config section; `resolve` fills in
`auto` from the task's objective and the directions its metrics declare; `judge` compares the two
sets of scores (docs/registry.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from trainpipe.errors import ConfigError
from trainpipe.tasks.base import test_metric

DIRECTIONS = ("auto", "max", "min")


@dataclass(frozen=True)
class Gate:
    """`registry.gate`: compare `metric` in `direction`; require `min_improvement` over the
    champion and at least `floor` (champion or not)."""

    metric: str = "auto"
    direction: str = "auto"
    min_improvement: float = 0.0
    floor: float | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ConfigError(
                "registry.gate.direction", f"must be one of auto|max|min, got {self.direction!r}"
            )
        if not self.min_improvement >= 0:  # also refuses NaN
            raise ConfigError(
                "registry.gate.min_improvement", f"must be >= 0, got {self.min_improvement}"
            )

    @classmethod
    def from_config(cls, conf: dict[str, Any] | None) -> Gate:
        """The gate recorded in a resolved job config (its `registry.gate`), defaults if absent
        (a version trained before the gate existed, or not by trainpipe)."""
        section = ((conf or {}).get("registry") or {}).get("gate") or {}
        fields = ("metric", "direction", "min_improvement", "floor")
        return cls(**{k: section[k] for k in fields if k in section})

    def with_overrides(self, **overrides: Any) -> Gate:
        """This gate with the values that are not None replaced (command-line flags)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def resolve(
        self,
        objective_metric: str,
        objective_mode: str,
        directions: Mapping[str, str] | None = None,
    ) -> Gate:
        """`auto` made concrete from the task's gate metric and objective direction (`val/acc`,
        `max` → `test/acc`, `max`; a `test/` metric is taken as it is); for another metric, from
        `directions` (the task's `metric_directions`: `f1` → max)."""
        task_metric = test_metric(objective_metric)
        metric = task_metric if self.metric == "auto" else self.metric
        direction = self.direction
        if direction == "auto":
            direction = (
                objective_mode if metric == task_metric else _direction(metric, directions or {})
            )
        return replace(self, metric=metric, direction=direction)

    def describe(self) -> str:
        """The rule in one line, e.g. `test/acc (max): challenger >= champion + 0.01, >= 0.9`."""
        sign = ">=" if self.direction == "max" else "<="
        rule = f"{self.metric} ({self.direction}): challenger {sign} champion"
        if self.min_improvement:
            rule += f" {'+' if self.direction == 'max' else '-'} {self.min_improvement:g}"
        if self.floor is not None:
            rule += f", {sign} floor {self.floor:g}"
        return rule


@dataclass(frozen=True)
class Verdict:
    passed: bool
    why: str  # one line: what passed or what failed, with the numbers


def judge(
    gate: Gate,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    *,
    unscored: str | None = None,
) -> Verdict:
    """Whether `challenger`'s scores pass a resolved `gate`; `champion` None: only the floor.
    `unscored` says why a champion that exists has no scores (it is not "no champion")."""
    metric = gate.metric
    if metric not in challenger:
        raise ConfigError(
            "registry.gate.metric",
            f"{metric!r} is not among the scores ({', '.join(sorted(challenger))})",
        )
    value = challenger[metric]
    if math.isnan(value):
        return Verdict(False, f"the challenger's {metric} is NaN")
    if gate.floor is not None and not _reaches(value, gate.floor, gate.direction):
        return Verdict(False, f"{metric} {value:.4g} does not reach the floor {gate.floor:g}")
    if champion is None:
        absent = unscored or "no champion to compare with"
        return Verdict(True, f"{absent}; {metric} {value:.4g}" + _floor_note(gate))
    if metric not in champion:
        return Verdict(False, f"the champion has no {metric} score to compare with")
    # the bar the challenger must reach: the champion's score moved by the required improvement
    step = gate.min_improvement if gate.direction == "max" else -gate.min_improvement
    bar = champion[metric] + step
    comparison = f"{metric} {value:.4g} vs champion {champion[metric]:.4g} (needs {bar:.4g})"
    return Verdict(_reaches(value, bar, gate.direction), comparison)


def _reaches(value: float, bar: float, direction: str) -> bool:
    """`value` is at the bar or beyond it; a difference of float rounding counts as at the bar
    (0.9 - 0.1 is 0.7999999999999999: an improvement of exactly `min_improvement` passes)."""
    if math.isclose(value, bar, rel_tol=1e-9, abs_tol=1e-12):
        return True
    return value > bar if direction == "max" else value < bar


def _floor_note(gate: Gate) -> str:
    return "" if gate.floor is None else f" reaches the floor {gate.floor:g}"


def _direction(metric: str, directions: Mapping[str, str]) -> str:
    direction = directions.get(metric.rsplit("/", 1)[-1])
    if direction is None:
        raise ConfigError(
            "registry.gate.direction",
            f"cannot tell whether a larger {metric} is better; set it to max or min",
        )
    return direction
