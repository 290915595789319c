"""What the user sees: the config tree at the start and a short summary at the end (rich)."""

from __future__ import annotations

from typing import Any

import yaml
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.tree import Tree

from trainpipe.console import to_log_file

ORDER = ("data", "model", "trainer", "callbacks", "logger", "paths")


def print_config_tree(conf: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    tree = Tree("config", guide_style="dim")
    sections = [k for k in ORDER if k in conf] + [
        k for k in conf if k not in ORDER and isinstance(conf[k], dict)
    ]
    scalars = {k: v for k, v in conf.items() if not isinstance(v, dict)}
    for name in sections:
        branch = tree.add(f"[bold]{name}")
        branch.add(
            Syntax(yaml.safe_dump(conf[name], sort_keys=False).rstrip(), "yaml", theme="ansi_dark")
        )
    if scalars:
        branch = tree.add("[bold]run")
        branch.add(
            Syntax(yaml.safe_dump(scalars, sort_keys=False).rstrip(), "yaml", theme="ansi_dark")
        )
    console.print(tree)


def print_summary(title: str, rows: dict[str, Any], console: Console | None = None) -> None:
    shown = {k: f"{v:.6g}" if isinstance(v, float) else v for k, v in rows.items() if v is not None}
    width = max(len(k) for k in shown)
    lines = [f"{k.ljust(width)}  {v}" for k, v in shown.items()]
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log file or a pipe: no 80-column wrap of paths and titles
            console = Console(width=max(80, len(title) + 8, *(len(line) + 4 for line in lines)))
    body = "\n".join(f"[bold]{k.ljust(width)}[/bold]  {v}" for k, v in shown.items())
    console.print(Panel(body, title=title, expand=False))
    to_log_file("\n".join([title, *lines]))


def ui_hint(tracking_uri: str | None) -> str | None:
    """The command (or URL) that shows this run in the MLflow UI."""
    if not tracking_uri:
        return None
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    if tracking_uri == "sqlite:///mlflow.db":
        return "mlflow ui   (in this directory)"
    return f"mlflow ui --backend-store-uri {tracking_uri}"
