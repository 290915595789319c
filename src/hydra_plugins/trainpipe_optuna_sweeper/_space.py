"""Search-space parsing: Hydra override syntax or optuna-style mappings -> distributions.

Private module (skipped by Hydra's plugin scanner): it imports optuna.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    IntervalSweep,
    Override,
    Quote,
    QuotedString,
    RangeSweep,
)
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

_NATIVE_KEYS = {
    "float": ({"low", "high"}, {"log", "step"}),
    "int": ({"low", "high"}, {"log", "step"}),
    "categorical": ({"choices"}, set()),
}


class SearchSpaceError(ValueError):
    """An entry of the search space cannot be turned into an optuna distribution."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"Invalid search space for parameter '{name}': {reason}")
        self.param = name


@dataclass
class SearchSpace:
    """Distributions to sample plus the fixed overrides every trial gets."""

    #: optuna parameter name (override key without +/++ prefix) -> distribution
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    #: optuna parameter name -> key element used in the override (``+x``, ``db@pkg``)
    override_keys: dict[str, str] = field(default_factory=dict)
    #: name -> complete override line for non-swept entries (``x=3``, ``~y``)
    fixed: dict[str, str] = field(default_factory=dict)

    def overrides_for(self, params: Mapping[str, Any]) -> list[str]:
        """Hydra overrides (fixed ones first) that set ``params`` sampled by optuna."""
        out = list(self.fixed.values())
        for name, value in params.items():
            key = self.override_keys.get(name, name)
            out.append(f"{key}={format_value(value)}")
        return out


def format_value(value: Any) -> str:
    """Render a Python value as the value part of a Hydra override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value)  # 'inf', '-inf', '1e-05' are all valid override floats
    if isinstance(value, Mapping):
        items = ",".join(f"{k}:{format_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    text = str(value)
    if _parses_back_to(text):
        return text
    return QuotedString(text=text, quote=Quote.single).with_quotes()


_PARSER: OverridesParser | None = None


def _parses_back_to(text: str) -> bool:
    """True if ``k=<text>`` parses to exactly the string ``text`` (no quoting needed)."""
    global _PARSER
    if _PARSER is None:
        _PARSER = OverridesParser.create()
    try:
        ov = _PARSER.parse_override(f"k={text}")
    except Exception:
        return False
    return not ov.is_sweep_override() and ov.value() == text and isinstance(ov.value(), str)


def _plain(value: Any, name: str) -> Any:
    if isinstance(value, QuotedString):
        return value.text
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise SearchSpaceError(
        name, f"choice {value!r} is not a scalar (optuna choices must be str/int/float/bool/null)"
    )


def _numbers(name: str, *values: Any) -> list[int | float]:
    out: list[int | float] = []
    for v in values:
        if isinstance(v, bool):
            raise SearchSpaceError(name, f"expected a number, got {v!r}")
        if isinstance(v, (int, float)):
            out.append(v)
            continue
        try:  # e.g. '1e-4' read as a string by a YAML 1.1 loader
            out.append(float(v))
        except (TypeError, ValueError):
            raise SearchSpaceError(name, f"expected a number, got {v!r}") from None
    return out


def _build(name: str, factory: Any, **kwargs: Any) -> BaseDistribution:
    try:
        return factory(**kwargs)
    except (TypeError, ValueError) as e:
        raise SearchSpaceError(name, str(e)) from None


def _from_override(name: str, ov: Override) -> BaseDistribution:
    value = ov.value()
    tags = set(getattr(value, "tags", set()) or ())
    log = "log" in tags
    if isinstance(value, IntervalSweep):
        low, high = _numbers(name, value.start, value.end)
        if isinstance(low, int) and isinstance(high, int):
            return _build(name, IntDistribution, low=low, high=high, log=log)
        return _build(name, FloatDistribution, low=float(low), high=float(high), log=log)
    if isinstance(value, RangeSweep):
        if value.step == 0:
            raise SearchSpaceError(name, "range() step must not be 0")
        values = list(value.range())  # Hydra semantics: stop is exclusive
        if not values:
            raise SearchSpaceError(name, f"range({value.start},{value.stop},{value.step}) is empty")
        lo, hi, step = min(values), max(values), abs(value.step)
        if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
            return _build(name, IntDistribution, low=lo, high=hi, step=step, log=log)
        if log:
            raise SearchSpaceError(name, "tag(log, ...) cannot be combined with a float range step")
        hi = float(Decimal(str(lo)) + Decimal(str(step)) * (len(values) - 1))
        return _build(name, FloatDistribution, low=float(lo), high=hi, step=float(step))
    if ov.is_choice_sweep():
        if log:
            raise SearchSpaceError(name, "tag(log, ...) is not supported on a choice")
        choices = [_plain(v, name) for v in ov.sweep_iterator()]
        if not choices:
            raise SearchSpaceError(name, "choice() is empty")
        return _build(name, CategoricalDistribution, choices=choices)
    raise SearchSpaceError(name, f"unsupported sweep type {ov.value_type}")


def _from_mapping(name: str, spec: Mapping[str, Any]) -> BaseDistribution:
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in _NATIVE_KEYS:
        raise SearchSpaceError(
            name, f"unknown type {kind!r}, expected one of {sorted(_NATIVE_KEYS)}"
        )
    required, optional = _NATIVE_KEYS[kind]
    missing = required - spec.keys()
    unknown = spec.keys() - required - optional - {"type"}
    if missing:
        raise SearchSpaceError(name, f"type {kind} needs key(s) {sorted(missing)}")
    if unknown:
        raise SearchSpaceError(name, f"unknown key(s) {sorted(unknown)} for type {kind}")
    log = bool(spec.get("log", False))
    if kind == "categorical":
        choices = spec["choices"]
        if isinstance(choices, (str, bytes)) or not isinstance(choices, Iterable):
            raise SearchSpaceError(name, "choices must be a list")
        choices = [_plain(c, name) for c in choices]
        if not choices:
            raise SearchSpaceError(name, "choices is empty")
        return _build(name, CategoricalDistribution, choices=choices)
    low, high = _numbers(name, spec["low"], spec["high"])
    step = spec.get("step")
    if kind == "int":
        if not (float(low).is_integer() and float(high).is_integer()):
            raise SearchSpaceError(name, f"type int needs integer bounds, got {low}, {high}")
        int_step = 1 if step is None else int(_numbers(name, step)[0])
        return _build(name, IntDistribution, low=int(low), high=int(high), log=log, step=int_step)
    fstep = None if step is None else float(_numbers(name, step)[0])
    return _build(name, FloatDistribution, low=float(low), high=float(high), log=log, step=fstep)


def _to_python(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def parse_search_space(
    params: Mapping[str, Any] | None,
    arguments: Sequence[str] = (),
    config_loader: Any = None,
) -> SearchSpace:
    """Build the search space from the sweeper's ``params`` and command-line overrides.

    Command-line ``arguments`` are applied after ``params``: an argument with the
    same key replaces the ``params`` entry. Raises :class:`SearchSpaceError` (a
    ``ValueError``) naming the offending parameter.
    """
    parser = OverridesParser.create(config_loader=config_loader)
    space = SearchSpace()

    def add_line(name: str, line: str) -> None:
        try:
            ov = parser.parse_override(line)
        except Exception as e:
            raise SearchSpaceError(name, str(e).strip()) from None
        pname = ov.key_or_group if ov.package is None else f"{ov.key_or_group}@{ov.package}"
        for table in (space.distributions, space.override_keys, space.fixed):
            table.pop(pname, None)
        if ov.is_sweep_override():
            space.distributions[pname] = _from_override(pname, ov)
            space.override_keys[pname] = ov.get_key_element()
        else:
            space.fixed[pname] = line

    params = _to_python(params) or {}
    if not isinstance(params, Mapping):
        raise SearchSpaceError("<params>", f"params must be a mapping, got {type(params).__name__}")
    for key, spec in params.items():
        key = str(key)
        if isinstance(spec, Mapping):
            name = key.lstrip("+~")
            for table in (space.distributions, space.override_keys, space.fixed):
                table.pop(name, None)
            space.distributions[name] = _from_mapping(key, spec)
            space.override_keys[name] = key
        elif isinstance(spec, (list, tuple)):
            raise SearchSpaceError(
                key,
                "a YAML list is ambiguous; write choice(a,b) / 'a,b' for a categorical "
                "or {type: categorical, choices: [...]}",
            )
        else:
            value = spec if isinstance(spec, str) else format_value(spec)
            add_line(key, f"{key}={value}")
    for line in arguments:
        add_line(line.split("=", 1)[0], line)
    return space
