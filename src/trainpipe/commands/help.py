"""`trainpipe train --help` / `trainpipe eval --help`: the config groups this command composes, their
options, and how to override keys. Read from the entry config's defaults list: only the groups
the command really uses (Hydra's own --help lists every group of the tree)."""

from __future__ import annotations

from pathlib import Path

import yaml

from trainpipe.config.locate import config_dir


def _defaults(path: Path) -> list[tuple[str, str]]:
    """(group, option) entries of a config file's defaults list (`_self_` and the like left out)."""
    items = (yaml.safe_load(path.read_text()) or {}).get("defaults", [])
    return [next(iter(item.items())) for item in items if isinstance(item, dict)]


def group_choices(entry: str, root: Path | None = None) -> list[tuple[str, str, list[str]]]:
    """(group, default option, all options) for each group `trainpipe <entry>` composes: those of
    `<entry>.yaml`'s defaults list, and groups an option pulls in (`data=text` → tokenizer)."""
    root = root or config_dir()
    found = []
    for group, default in _defaults(root / f"{entry}.yaml"):
        if group.startswith(("hydra", "override")):
            continue
        options = sorted(p.stem for p in (root / group).glob("*.yaml"))
        found.append((group, "none" if default is None else str(default), options))
        for option in options:
            for nested, nested_default in _defaults(root / group / f"{option}.yaml"):
                name = nested.lstrip("/").split("@")[0]
                if nested.startswith("/") and name not in {g for g, _, _ in found}:
                    nested_options = sorted(p.stem for p in (root / name).glob("*.yaml"))
                    found.append((name, f"{nested_default}, with {group}={option}", nested_options))
    return found


def help_text(entry: str, summary: str) -> str:
    lines = [f"trainpipe {entry}: {summary}", "", "config groups (choose with GROUP=OPTION):"]
    for group, default, options in group_choices(entry):
        lines.append(f"  {group:<15} {', '.join(options)}   (default: {default})")
    lines += [
        "",
        "override any key with KEY=VALUE (e.g. trainer.max_epochs=5); add a key with +KEY=VALUE",
        f"trainpipe {entry} --cfg job        print the composed config (every key), run nothing",
        f"trainpipe {entry} --hydra-help     Hydra's own flags",
        "configs/ documents every key; a [rule] at the end of its comment constrains it",
    ]
    return "\n".join(lines)
