"""Check a composed config against `schema.py`; the first problem becomes one ConfigError."""

from __future__ import annotations

import difflib
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from trainpipe.config.schema import KNOWN_TARGET_ARGS, SECTIONS, TOP_LEVEL, Rule
from trainpipe.errors import ConfigError

FILE_SOURCES = ("csv", "parquet", "json")


def resolve(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain containers with every interpolation resolved (Hydra's own node dropped)."""
    body = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    try:
        return OmegaConf.to_container(body, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except MissingMandatoryValue as err:
        key = getattr(err, "full_key", "") or ""
        raise ConfigError(
            key, f"is required but not set (add `{key}=VALUE` to the command)"
        ) from None
    except OmegaConfBaseException as err:
        raise ConfigError(getattr(err, "full_key", "") or "", str(err).splitlines()[0]) from None


def validate(cfg: DictConfig, entry: str = "train") -> dict[str, Any]:
    """Validate the composed config of `trainpipe <entry>`; return it resolved."""
    conf = resolve(cfg)
    _check_keys("", conf, TOP_LEVEL[entry], open_keys=False)
    for section, rules in SECTIONS.items():
        node = _select(conf, section)
        if isinstance(node, dict):
            target = node.get("_target_")
            extra = KNOWN_TARGET_ARGS.get(target) if section.startswith("model.") else None
            open_keys = section.startswith("model.") and extra is None
            _check_keys(section, node, rules, open_keys=open_keys, extra=extra, target=target)
    for name, callback in (conf.get("callbacks") or {}).items():
        if not isinstance(callback, dict) or "_target_" not in callback:
            raise ConfigError(f"callbacks.{name}", "must be a mapping with a `_target_`")
        allowed = KNOWN_TARGET_ARGS.get(callback["_target_"])
        if allowed is not None:
            _check_keys(
                f"callbacks.{name}",
                callback,
                {"_target_": Rule((str,))},
                extra=allowed,
                target=callback["_target_"],
            )
    _check_cross_fields(conf, entry)
    return conf


def _select(conf: dict[str, Any], dotted: str) -> Any:
    node: Any = conf
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _check_keys(
    prefix: str,
    node: dict[str, Any],
    rules: dict[str, Rule],
    open_keys: bool = False,
    extra: set[str] | None = None,
    target: str | None = None,
) -> None:
    allowed = set(rules) | (extra or set())
    for key, value in node.items():
        full_key = f"{prefix}.{key}" if prefix else key
        if key == "hydra" and not prefix:
            continue
        if key not in allowed:
            if open_keys:
                continue
            hint = difflib.get_close_matches(key, allowed, n=1)
            owner = f" for {target}" if target else ""
            suggestion = (
                f"; did you mean `{prefix + '.' if prefix else ''}{hint[0]}`?" if hint else ""
            )
            raise ConfigError(full_key, f"unknown key{owner}{suggestion}")
        if key in rules:
            check_value(full_key, value, rules[key])


def check_value(key: str, value: Any, rule: Rule) -> None:
    """Raise ConfigError unless `value` satisfies `rule`."""
    if value is None:
        if rule.nullable:
            return
        raise ConfigError(key, f"must be {rule.describe()}, got null")
    if object not in rule.types:
        is_bool = isinstance(value, bool)
        ok = isinstance(value, rule.types) and (not is_bool or bool in rule.types)
        if not ok:
            raise ConfigError(key, f"must be {rule.describe()}, got {value!r}")
    if rule.choices is not None and value not in rule.choices:
        raise ConfigError(key, f"must be {rule.describe()}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        bad = (
            (rule.min is not None and value < rule.min)
            or (rule.max is not None and value > rule.max)
            or (rule.gt is not None and value <= rule.gt)
            or (rule.lt is not None and value >= rule.lt)
        )
        if bad:
            raise ConfigError(key, f"must be {rule.describe()}, got {value!r}")


def _check_cross_fields(conf: dict[str, Any], entry: str) -> None:
    data = conf["data"]
    if data["val_fraction"] + data["test_fraction"] >= 1:
        raise ConfigError(
            "data.val_fraction",
            f"data.val_fraction + data.test_fraction must be < 1, got {data['val_fraction']} + {data['test_fraction']}",
        )
    if data["source"] in FILE_SOURCES and not data.get("path"):
        raise ConfigError(
            "data.path", f"is required for data source {data['source']!r} (a file path or glob)"
        )
    for key in ("features", "image_shape"):
        items = data.get(key)
        if items is not None and not items:
            raise ConfigError(f"data.{key}", "must not be an empty list (use null for the default)")
    if data.get("features") is not None:
        for column in data["features"]:
            if not isinstance(column, str):
                raise ConfigError(
                    "data.features", f"must be a list of column names, got {column!r}"
                )
        if data["target"] in data["features"]:
            raise ConfigError("data.features", f"contains the target column {data['target']!r}")
    if data.get("image_shape") is not None:
        for dim in data["image_shape"]:
            if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
                raise ConfigError(
                    "data.image_shape",
                    f"must be a list of positive ints like [1, 8, 8], got {data['image_shape']}",
                )
    if entry == "train":
        for name in conf["preemption"]["signals"]:
            if name not in ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT"):
                raise ConfigError(
                    "preemption.signals",
                    f"must name SIGTERM, SIGUSR1, SIGUSR2 or SIGINT, got {name!r}",
                )
        net_target = conf["model"]["net"].get("_target_", "")
        if net_target.endswith(".CNN") and data.get("image_shape") is None:
            raise ConfigError(
                "data.image_shape",
                "model.net CNN needs image-shaped input; set data.image_shape=[C,H,W]",
            )
        trainer = conf["trainer"]
        devices = trainer["devices"]
        if isinstance(devices, str) and devices != "auto" and not devices.lstrip("-").isdigit():
            raise ConfigError(
                "trainer.devices",
                f"must be a positive int, a list of ids or 'auto', got {devices!r}",
            )
        if (
            isinstance(devices, int)
            and not isinstance(devices, bool)
            and devices < 1
            and devices != -1
        ):
            raise ConfigError(
                "trainer.devices", f"must be >= 1 (or -1 / 'auto' for all), got {devices}"
            )
