"""A training job's model card and plots, written into its model package before registration.

    <output dir>/model/model_card/model_card.md        data, task, metrics, config, lineage, use
    <output dir>/model/model_card/learning_curves.png  from the metrics the job journaled
    <output dir>/model/model_card/<task figure>.png    e.g. confusion_matrix.png (task.figures)

The learning curves are read from the job's journal, not from MLflow: during an outage the
metrics have not reached MLflow yet, and the card must not depend on it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from trainpipe.config.secrets import masked_config
from trainpipe.plan import JobPlan
from trainpipe.reports.card import ModelCard, render
from trainpipe.reports.plots import learning_curves, save_png
from trainpipe.runtime.atomic import atomic_write_text
from trainpipe.tracking.lineage import (
    COMMAND_ENV,
    command_line,
    environment_tags,
    git_tags,
    versions,
)

CARD_DIR = "model_card"
CARD_FILE = "model_card.md"


def write_model_card(
    plan: JobPlan,
    metrics: dict[str, float],
    history: dict[str, list[tuple[int, float]]],
    run_id: str | None,
    package_dir: Path,
) -> list[Path]:
    """Draw the plots and write the card into `<package_dir>/model_card/`; returns the files."""
    directory = Path(package_dir) / CARD_DIR
    figures: dict[str, Any] = {}
    curves = learning_curves(history, plan.conf["optimized_metric"])
    if curves is not None:
        figures["learning_curves"] = curves
    predictor = plan.task.load_predictor(Path(package_dir))
    figures.update(plan.task.figures(predictor, plan.prepared))
    files = [save_png(figure, directory / f"{name}.png") for name, figure in figures.items()]
    card = ModelCard(
        model_name=plan.conf["registry"]["model_name"],
        run_name=plan.run_name,
        run_id=run_id,
        task=f"{plan.task.name} ({plan.task_reason})",
        objective=f"{plan.conf['optimized_metric']} ({plan.conf['optimized_mode']})",
        data=data_facts(plan),
        metrics=metrics,
        lineage=lineage_facts(plan.conf),
        config_yaml=yaml.safe_dump(masked_config(plan.conf), sort_keys=False),
        figures={name.replace("_", " "): f"{name}.png" for name in figures},
    )
    files.append(atomic_write_text(directory / CARD_FILE, render(card)))
    return files


def data_facts(plan: JobPlan) -> dict[str, Any]:
    prepared, spec = plan.prepared, plan.spec
    facts: dict[str, Any] = {
        "source": prepared.source,
        "content digest": f"`{prepared.digest}`",
        "split digest": f"`{prepared.split_digest}`",
        "rows per split": ", ".join(f"{k} {v}" for k, v in prepared.split_sizes().items()),
        "split": f"data.val_fraction {plan.conf['data'].get('val_fraction')}, "
        f"data.test_fraction {plan.conf['data'].get('test_fraction')}, seed {plan.conf['seed']}",
    }
    return {**facts, **plan.task.describe_data(spec).facts}


def lineage_facts(conf: dict[str, Any]) -> dict[str, Any]:
    git = git_tags()
    env = environment_tags()
    packages = versions()
    return {
        "git commit": git.get("mlflow.source.git.commit", "(not a git repository)"),
        "uncommitted changes": "yes (lineage/uncommitted.patch)"
        if git.get("trainpipe.git.dirty") == "true"
        else ("no" if git else None),
        "command": f"`{os.environ.get(COMMAND_ENV) or command_line()}`",
        "seed": conf["seed"],
        "packages": ", ".join(
            f"{k.rsplit('.', 1)[1]} {v}"
            for k, v in packages.items()
            if k != "trainpipe.version.python"
        ),
        "python": packages.get("trainpipe.version.python"),
        "CUDA": env["trainpipe.env.cuda"],
        "GPUs": env["trainpipe.env.gpus"],
        "environment": "lineage/requirements.txt (pip freeze)",
    }
