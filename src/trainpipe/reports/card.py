"""A model card as markdown: what the model is, what it was trained on, how well it does, how it
was made, and what it is for. Pure: the facts come in, the text goes out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

INTENDED_USE = """\
_To be written by the model's owner before it serves anything:_
- **Intended use:** the decisions this model may inform, and who uses them.
- **Out of scope:** inputs and decisions it must not be used for.
- **Known limitations:** data it was not trained on, groups it may serve worse, how it fails.
"""


@dataclass
class ModelCard:
    model_name: str
    run_name: str
    run_id: str | None  # None while the tracking server has not answered (sent later)
    task: str  # "classification (inferred: …)"
    objective: str  # "val/acc (max)"
    data: dict[str, Any]  # label → value, shown as a table
    metrics: dict[str, float]  # val/* of the best checkpoint, test/* of the test split
    lineage: dict[str, Any]  # label → value: commit, command, seed, versions, …
    config_yaml: str  # the resolved training config
    figures: dict[str, str] = field(default_factory=dict)  # caption → PNG file beside the card


def _table(rows: dict[str, Any], header: tuple[str, str]) -> list[str]:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    for key, value in rows.items():
        if value is None:
            continue
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        lines.append(f"| {key} | {text.replace('|', '/')} |")
    return lines


def render(card: ModelCard) -> str:
    """The card's markdown (GitHub flavour: tables, a collapsible config)."""
    run = f"`{card.run_id}`" if card.run_id else "(not created yet: tracking is sent later)"
    lines = [
        f"# Model card: {card.model_name}",
        "",
        f"Trained by the run **{card.run_name}** (MLflow run {run}).",
        "",
        "## Task",
        "",
        f"{card.task}; best checkpoint chosen by {card.objective}.",
        "",
        "## Data",
        "",
        *_table(card.data, ("", "")),
        "",
        "## Metrics",
        "",
        "`val/*`: the best checkpoint on the validation split; `test/*`: the same weights on the "
        "held-out test split.",
        "",
        *_table(dict(sorted(card.metrics.items())), ("metric", "value")),
        "",
    ]
    if card.figures:
        lines += ["## Plots", ""]
        for caption, file_name in card.figures.items():
            lines += [f"**{caption}**", "", f"![{caption}]({file_name})", ""]
    lines += [
        "## Lineage",
        "",
        *_table(card.lineage, ("", "")),
        "",
        "## Intended use",
        "",
        INTENDED_USE,
        "## Training config",
        "",
        "<details><summary>resolved config (also the run's <code>config.yaml</code>)</summary>",
        "",
        "```yaml",
        card.config_yaml.rstrip(),
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)
