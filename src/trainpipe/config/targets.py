"""Build objects from config only through `_target_` + `hydra.utils.instantiate`, arguments checked
first against the target's real signature (the schema does not copy any library's arguments).

    optimizer = instantiate_checked(cfg.model.optimizer, "model.optimizer")

A key the target does not take is a ConfigError naming it (exit 2, with "did you mean"), not a
TypeError deep inside the library. Imports the target, so it runs at build time, after the
config itself was validated.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from trainpipe.errors import ConfigError


def check_arguments(node: Any, key: str, provided: tuple[str, ...] = ()) -> None:
    """Raise ConfigError for keys of `node` that its `_target_` does not accept."""
    from hydra.utils import get_object

    target = node["_target_"]
    try:
        obj = get_object(target)
    except Exception as err:
        raise ConfigError(f"{key}._target_", f"cannot import {target!r}: {err}") from None
    try:
        parameters = inspect.signature(obj).parameters
    except (TypeError, ValueError):  # builtins without a signature: nothing to check
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [name for name in parameters if name != "self"]
    for name in node:
        if name.startswith("_") or name in accepted or name in provided:
            continue
        hint = difflib.get_close_matches(name, accepted, n=1)
        suggestion = f"; did you mean `{key}.{hint[0]}`?" if hint else ""
        raise ConfigError(f"{key}.{name}", f"unknown argument for {target}{suggestion}")


def declared(node: Any, key: str, attribute: str, default: Any = None) -> Any:
    """What the class a node's `_target_` names declares about itself (a class attribute, such as
    a tracker's `tracked`), read without building it; `default` without a `_target_`."""
    from hydra.utils import get_object

    target = node.get("_target_") if node else None
    if not target:
        return default
    try:
        return getattr(get_object(str(target)), attribute, default)
    except Exception as err:
        raise ConfigError(f"{key}._target_", f"cannot import {target!r}: {err}") from None


def instantiate_checked(node: Any, key: str, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate(node, **kwargs)` after `check_arguments`."""
    from hydra.utils import instantiate

    check_arguments(node, key, provided=tuple(kwargs))
    return instantiate(node, **kwargs)
