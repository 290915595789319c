"""The config schema, read from the YAML tree itself: each key is declared once, where its default
is set, with its comment — and a rule in [brackets] at the end of that comment:

    # rows per batch (per process under DDP) [int, >= 1]
    batch_size: 64

A rule is a type (`int`, `number`, `str`, `bool`, `list`, `dict`, `any`; `?` adds "or null"),
then optional clauses: bounds (`>= 1`, `> 0`, `< 1`, `<= 5`), `one of a|b|c`, and `open` for
a section whose extra keys are allowed (they are checked against the real signature of the
`_target_` they are passed to, when it is built). A key without a rule gets the type of its
default value. A section handed to a `_target_` outside trainpipe is open as well.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trainpipe.config.locate import config_dir

TYPE_NAMES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "number": (int, float),
    "str": (str,),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
    "any": (object,),
}
RULE = re.compile(
    r"\[((?:int|number|str|bool|list|dict|any)\??(?:,[^\[\]]*)?|one of [^\[\]]+)\]\s*$"
)
KEY_LINE = re.compile(r"^(\s*)([A-Za-z_][\w]*)\s*:(.*)$")
BOUND = re.compile(r"^(>=|>|<=|<)\s*(-?[\d.e+-]+)$")
# groups Hydra owns; their keys are Hydra's business
SKIPPED_GROUPS = ("hydra",)
# groups whose members are named freely (`+callbacks.mine={_target_: …}` adds a callback)
OPEN_GROUPS = ("callbacks",)
ARTICLES = {"int": "an int", "number": "a number", "str": "a string", "bool": "true or false",
            "list": "a list", "dict": "a mapping", "object": "anything"}  # fmt: skip


@dataclass(frozen=True)
class Rule:
    """Type and range of one config value, as declared next to it."""

    types: tuple[type, ...]
    nullable: bool = False
    bounds: tuple[tuple[str, float], ...] = ()
    choices: tuple[str, ...] | None = None
    open: bool = False
    where: str = ""  # file:line that declares it
    explicit: bool = False  # written as a [rule], not taken from the default's type

    def describe(self) -> str:
        """E.g. "a number > 0 and < 1", "an int >= 1 or null", "one of max, min"."""
        if self.choices is not None:
            text = "one of " + ", ".join(self.choices)
        else:
            name = "number" if float in self.types else self.types[0].__name__
            text = ARTICLES.get(name, name)
            text += " and".join(f" {op} {value:g}" for op, value in self.bounds)
        return text + (" or null" if self.nullable else "")


def parse_rule(text: str, default: Any, where: str) -> Rule:
    """A `[...]` rule (or None) → Rule; without one the default value's type is the rule."""
    match = RULE.search(text or "")
    if match is None:
        return Rule(_type_of(default), nullable=default is None, where=where)
    body = match.group(1)
    if body.startswith("one of "):
        body = f"any, {body}"
    first, *clauses = [part.strip() for part in body.split(",")]
    nullable = first.endswith("?")
    type_name = first.rstrip("?")
    if type_name not in TYPE_NAMES:
        raise ValueError(f"{where}: unknown type {type_name!r} in rule [{match.group(1)}]")
    bounds: list[tuple[str, float]] = []
    choices = None
    is_open = False
    for clause in clauses:
        if clause == "open":
            is_open = True
        elif clause.startswith("one of "):
            choices = tuple(c.strip() for c in clause[len("one of ") :].split("|"))
        elif bound := BOUND.match(clause):
            bounds.append((bound.group(1), float(bound.group(2))))
        else:
            raise ValueError(f"{where}: cannot read clause {clause!r} of rule [{match.group(1)}]")
    return Rule(TYPE_NAMES[type_name], nullable, tuple(bounds), choices, is_open, where, True)


def _type_of(default: Any) -> tuple[type, ...]:
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, (int, float)):
        return (int, float) if isinstance(default, float) else (int,)
    if isinstance(default, str):
        return (object,) if "${" in default or default == "???" else (str,)
    if isinstance(default, (list, dict)):
        return (type(default),)
    return (object,)


@dataclass(frozen=True)
class Schema:
    rules: dict[str, Rule]  # dotted key → rule, for every key declared anywhere in the tree

    def rule(self, key: str) -> Rule | None:
        return self.rules.get(key)

    def children(self, key: str) -> list[str]:
        """Declared keys directly under `key` ("" for the top level)."""
        prefix = f"{key}." if key else ""
        depth = prefix.count(".")
        return sorted(
            k[len(prefix) :] for k in self.rules if k.startswith(prefix) and k.count(".") == depth
        )


@functools.lru_cache(maxsize=4)
def load_schema(entry: str, root: Path | None = None) -> Schema:
    """Every key the YAML tree declares for `trainpipe <entry>`, with its rule."""
    root = root or config_dir()
    rules: dict[str, Rule] = {}
    for group in sorted(p for p in root.rglob("*") if p.is_dir()):
        relative = group.relative_to(root)
        package = ".".join(relative.parts)
        if relative.parts[0] in SKIPPED_GROUPS:
            continue
        if any(_package(f, f.relative_to(root)) == package for f in group.glob("*.yaml")):
            # a config group: a mapping, or null when nothing is chosen (`model/scheduler=null`)
            rules[package] = Rule((dict,), True, open=package in OPEN_GROUPS, where=str(relative))
    for path in sorted(root.rglob("*.yaml")):
        relative = path.relative_to(root)
        if relative.parts[0] in SKIPPED_GROUPS:
            continue
        if len(relative.parts) == 1 and path.stem != entry:
            continue  # the other entry's top-level keys
        for key, rule in _declarations(path, _package(path, relative)):
            # a key's [rule] is written once; elsewhere the key only gets a new default
            known = rules.get(key)
            if known is None or (rule.explicit and not known.explicit):
                rules[key] = rule
    return Schema(rules)


def _package(path: Path, relative: Path) -> str:
    header = path.read_text().split("\n", 3)[:3]
    for line in header:
        if line.startswith("# @package"):
            package = line.split(maxsplit=2)[2].strip()
            return "" if package == "_global_" else package
    return ".".join(relative.parts[:-1])


def _declarations(path: Path, package: str) -> list[tuple[str, Rule]]:
    """(dotted key, rule) of every mapping key in one YAML file, comments attached."""
    values = yaml.safe_load(path.read_text()) or {}
    found: list[tuple[str, Rule]] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    comment = ""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            comment = stripped
            continue
        match = KEY_LINE.match(line)
        if not match or stripped.startswith("- "):
            comment = "" if stripped else comment
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parts = [k for _, k in stack] + [key]
        stack.append((indent, key))
        if parts[0] == "defaults" or (not package and parts[0] in SKIPPED_GROUPS):
            comment = ""
            continue
        trailing = rest.split(" #", 1)[1] if " #" in rest else ""
        dotted = ".".join(p for p in (package, *parts) if p)
        default = _lookup(values, parts)
        found.append((dotted, parse_rule(trailing or comment, default, f"{path.name}:{number}")))
        comment = ""
    return found


def _lookup(values: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(values, dict):
            return None
        values = values.get(part)
    return values
