"""Check a composed config against the schema of the YAML tree; the first problem is one ConfigError.

Three kinds of checks, all before torch is imported:
- every key is declared somewhere in configs/ (a typo gets "did you mean"), except extra
  arguments of open sections, which `config/targets.py` checks against the real signature of
  their `_target_` when it is built;
- every value satisfies the rule declared next to its key (config/schema.py);
- rules that span keys (fractions that must sum below 1, a scheduler needs max_steps, …).
Rules that depend on the task or its model are the task's own (`Task.validate`, run by
`trainpipe.tasks.check_config` on the config validated here).
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from trainpipe.config import sources
from trainpipe.config.schema import Rule, Schema, load_schema
from trainpipe.errors import ConfigError, UserError

FSDP2_PRECISIONS = ("32-true", "32", "bf16-mixed", "bf16-true", "16-true")
SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT")
# a key this close to a declared one is a typo even in an open section (max_epoch → max_epochs)
TYPO_CUTOFF = 0.8
MISSING_VALUE = re.compile(r"Missing mandatory value: ([\w.]+)")


def resolve(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain containers with every interpolation resolved (Hydra's own node dropped)."""
    body = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    try:
        return OmegaConf.to_container(body, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        user_error = _raised_inside(err)
        if user_error is not None:  # raised by a resolver (a database's digest): said as is
            raise user_error from None
        # a missing value may surface while resolving another key that interpolates it
        missing = MISSING_VALUE.search(str(err))
        if isinstance(err, MissingMandatoryValue) or missing:
            # the full key when OmegaConf knows it ("data.target"), else the message's name
            full_key = getattr(err, "full_key", "") or ""
            key = (
                full_key
                if isinstance(err, MissingMandatoryValue) and full_key
                else missing.group(1)
            )
            message = f"is required but not set (add `{key}=VALUE` to the command)"
            raise ConfigError(key, message) from None
        raise ConfigError(getattr(err, "full_key", "") or "", str(err).splitlines()[0]) from None


def _raised_inside(err: BaseException) -> UserError | None:
    """The UserError that OmegaConf's resolution error wraps (its chain of causes), if any."""
    seen: BaseException | None = err
    for _ in range(10):
        seen = seen.__cause__ or seen.__context__ if seen is not None else None
        if seen is None or isinstance(seen, UserError):
            return seen
    return None


def validate(cfg: DictConfig, entry: str = "train") -> dict[str, Any]:
    """Validate the composed config of `trainpipe <entry>`; return it resolved."""
    conf = resolve(cfg)
    schema = load_schema(entry)
    _check_node("", conf, schema, is_open=False, owner=None)
    _check_cross_fields(conf, entry)
    return conf


def unknown_key(
    key: str, schema: Schema, owner: str | None = None, cutoff: float = 0.6
) -> ConfigError | None:
    """A ConfigError for a key the tree does not declare (None when a typo is unlikely and the
    caller allows extra keys, i.e. `cutoff` is TYPO_CUTOFF and nothing is that close)."""
    parent, _, name = key.rpartition(".")
    hint = difflib.get_close_matches(name, schema.children(parent), n=1, cutoff=cutoff)
    if cutoff >= TYPO_CUTOFF and not hint:
        return None
    where = f" for {owner}" if owner else ""
    suggestion = f"; did you mean `{parent + '.' if parent else ''}{hint[0]}`?" if hint else ""
    return ConfigError(key, f"unknown key{where}{suggestion}")


def _check_node(
    prefix: str, node: dict[str, Any], schema: Schema, is_open: bool, owner: str | None
) -> None:
    for name, value in node.items():
        key = f"{prefix}.{name}" if prefix else name
        if key == "hydra":
            continue
        rule = schema.rule(key)
        if rule is None:
            error = unknown_key(key, schema, owner, cutoff=TYPO_CUTOFF if is_open else 0.6)
            if error is not None:
                raise error
            continue  # an extra argument of an open section: checked when its target is built
        check_value(key, value, rule)
        if isinstance(value, dict):
            target = value.get("_target_")
            third_party = isinstance(target, str) and not target.startswith("trainpipe.")
            _check_node(key, value, schema, rule.open or third_party, target or owner)


def check_value(key: str, value: Any, rule: Rule) -> None:
    """Raise ConfigError unless `value` satisfies `rule`."""
    if value is None:
        if rule.nullable or object in rule.types:
            return
        raise ConfigError(key, f"must be {rule.describe()}, got null")
    if rule.choices is not None:
        if str(value) not in rule.choices:
            raise ConfigError(key, f"must be {rule.describe()}, got {value!r}")
        return
    if object not in rule.types:
        is_bool = isinstance(value, bool)
        if not isinstance(value, rule.types) or (is_bool and bool not in rule.types):
            raise ConfigError(key, f"must be {rule.describe()}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for op, bound in rule.bounds:
            ok = {
                ">=": value >= bound,
                ">": value > bound,
                "<=": value <= bound,
                "<": value < bound,
            }[op]
            if not ok:
                raise ConfigError(key, f"must be {rule.describe()}, got {value!r}")


def _check_cross_fields(conf: dict[str, Any], entry: str) -> None:
    data = conf.get("data")
    if (
        data is not None and entry != "predict"
    ):  # predict's data names a reader (predict/readers.py)
        _check_data(data)
    if entry == "train":
        _check_training(conf)


def _check_data(data: dict[str, Any]) -> None:
    kinds = sources.kinds()
    if data["kind"] not in kinds:
        raise ConfigError("data.kind", f"must be one of {', '.join(kinds)}, got {data['kind']!r}")
    serving = sources.serving(data["kind"])
    source = sources.SOURCES.get(data["source"])
    if source is None or data["kind"] not in source.kinds:
        raise ConfigError(
            "data.source",
            f"{data['kind']} data comes from {', '.join(serving)}, got {data['source']!r}",
        )
    if data["val_fraction"] + data["test_fraction"] >= 1:
        raise ConfigError(
            "data.val_fraction",
            f"data.val_fraction + data.test_fraction must be < 1, got {data['val_fraction']} + {data['test_fraction']}",
        )
    problem = source.check(data)
    if problem is not None:
        raise ConfigError(*problem)
    if data["kind"] == "table":
        _check_table(data)


def _check_training(conf: dict[str, Any]) -> None:
    _check_fsdp2(conf["trainer"])
    scheduler = conf["model"].get("scheduler") or {}
    total = scheduler.get("total_steps", -1)  # -1: max_epochs × steps per epoch (the module's)
    if not (isinstance(total, int) and (total >= 1 or total == -1)):
        raise ConfigError(
            "model.scheduler.total_steps",
            f"must be the run's length in optimizer steps (or -1: trainer.max_steps, else "
            f"max_epochs × steps per epoch), got {total!r}",
        )
    for name in conf["preemption"]["signals"]:
        if name not in SIGNALS:
            raise ConfigError("preemption.signals", f"must name {', '.join(SIGNALS)}, got {name!r}")
    devices = conf["trainer"]["devices"]
    if isinstance(devices, str) and devices != "auto" and not devices.lstrip("-").isdigit():
        raise ConfigError(
            "trainer.devices", f"must be a positive int, a list of ids or 'auto', got {devices!r}"
        )
    if isinstance(devices, int) and not isinstance(devices, bool) and devices < 1 and devices != -1:
        raise ConfigError(
            "trainer.devices", f"must be >= 1 (or -1 / 'auto' for all), got {devices}"
        )


def _check_table(data: dict[str, Any]) -> None:
    if data.get("target") is None:
        raise ConfigError(
            "data.target", "is required: the column to predict (add `data.target=COLUMN`)"
        )
    for key in ("features", "image_shape"):
        items = data.get(key)
        if items is not None and not items:
            raise ConfigError(f"data.{key}", "must not be an empty list (use null for the default)")
    for key in ("features", "categorical", "numeric", "drop"):
        for column in data.get(key) or []:
            if not isinstance(column, str):
                raise ConfigError(f"data.{key}", f"must be a list of column names, got {column!r}")
        if data["target"] in (data.get(key) or []):
            raise ConfigError(f"data.{key}", f"contains the target column {data['target']!r}")
    for dim in data.get("image_shape") or []:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigError(
                "data.image_shape",
                f"must be a list of positive ints like [1, 8, 8], got {data['image_shape']}",
            )


def _check_fsdp2(trainer: dict[str, Any]) -> None:
    strategy = trainer.get("strategy")
    target = strategy.get("_target_", "") if isinstance(strategy, dict) else ""
    if not str(target).endswith("FSDP2Strategy"):
        return
    if str(trainer["precision"]) not in FSDP2_PRECISIONS:
        raise ConfigError(
            "trainer.precision",
            f"trainer=fsdp2 takes one of {', '.join(FSDP2_PRECISIONS)}, got {trainer['precision']!r}",
        )
