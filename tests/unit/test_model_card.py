"""The model card's pure parts: its markdown, its plots, and the dataset record MLflow shows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from trainpipe.reports import plots
from trainpipe.reports.card import ModelCard, render
from trainpipe.tasks import get_task
from trainpipe.tasks.tabular import plots as tabular_plots
from trainpipe.tracking.lineage import dataset_input

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_the_card_has_every_section_and_the_numbers() -> None:
    card = ModelCard(
        model_name="wine",
        run_name="wine-mlp-1234abcd",
        run_id=None,
        task="classification (set in the config)",
        objective="val/acc (max)",
        data={"source": "wine.csv", "rows per split": "train 100, val 20, test 20"},
        metrics={"test/acc": 0.912345678, "val/acc": 0.9},
        lineage={"git commit": "abc123", "seed": 42, "uncommitted changes": None},
        config_yaml="seed: 42\n",
        figures={"confusion matrix": "confusion_matrix.png"},
    )
    text = render(card)
    for heading in ("# Model card: wine", "## Task", "## Data", "## Metrics", "## Plots",
                    "## Lineage", "## Intended use", "## Training config"):  # fmt: skip
        assert heading in text, heading
    assert "| test/acc | 0.912346 |" in text
    assert "![confusion matrix](confusion_matrix.png)" in text
    assert "not created yet" in text  # no run id during an outage
    assert "uncommitted changes" not in text  # None rows are left out
    assert "seed: 42" in text


def test_plots_are_drawn_and_written_as_png(tmp_path: Path) -> None:
    history = {"train/loss": [(1, 2.0), (2, 1.5)], "val/loss": [(2, 1.6)], "val/acc": [(2, 0.5)]}
    figures = {
        "curves": plots.learning_curves(history, "val/acc"),
        "matrix": tabular_plots.confusion_matrix(
            np.array([0, 1, 1]), np.array([0, 1, 0]), ["a", "b"]
        ),
        "scatter": tabular_plots.predicted_vs_true(np.array([1.0, 2.0]), np.array([1.1, 1.9]), "y"),
    }
    for name, figure in figures.items():
        path = plots.save_png(figure, tmp_path / f"{name}.png")
        assert path.read_bytes()[:8] == PNG_MAGIC
    assert plots.learning_curves({"lr-AdamW": [(1, 0.1)]}, "val/acc") is None


def test_the_dataset_record_names_source_digest_schema_and_rows_per_split() -> None:
    spec = {"feature_names": ["a", "b"], "target_name": "species", "class_values": ["x", "y"]}
    dataset, tags = dataset_input(
        name="rows",
        digest="d43ae95ca6935ccc",
        source="rows.csv",
        source_type="local",
        columns=get_task("classification").describe_data(spec).columns,
        split_sizes={"train": 8, "val": 1, "test": 1},
        split_digest="a3dd4efa9796938e",
    )
    assert dataset["source_type"] == "local"
    assert json.loads(dataset["source"]) == {"uri": "rows.csv"}
    columns = json.loads(dataset["schema"])["mlflow_colspec"]
    assert [(c["name"], c["type"]) for c in columns] == [
        ("a", "double"), ("b", "double"), ("species", "string")
    ]  # fmt: skip
    assert json.loads(dataset["profile"]) == {"num_rows": 10}
    assert tags == {
        "mlflow.data.context": "training",
        "trainpipe.split_digest": "a3dd4efa9796938e",
        "trainpipe.rows.train": "8",
        "trainpipe.rows.val": "1",
        "trainpipe.rows.test": "1",
    }
    assert get_task("lm").describe_data({"vocab_size": 256}).columns == [
        {"name": "text", "type": "string", "required": True}
    ]
