"""Lineage on a training run (dataset input, git patch, environment, seed), the model card and
plots of the registered version, and `trainpipe reproduce` — real CLI, real sqlite MLflow."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TINY, run_cli, with_empty_store, write_csv
from tests.integration.mlflow_store import client_for, runs_of

pytestmark = pytest.mark.slow

DATA = ["data=csv", "data.path=rows.csv", "data.target=species"]
DETERMINISTIC = ["trainer.deterministic=true", "trainer.accelerator=cpu"]


def git(workdir: Path, *args: str) -> None:
    identity = ["-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", *identity, *args], cwd=workdir, check=True, capture_output=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, store_template: Path) -> Path:
    """One deterministic CPU training, in a git repo with an uncommitted change."""
    directory = with_empty_store(tmp_path_factory.mktemp("lineage"), store_template)
    write_csv(directory / "rows.csv")
    (directory / "notes.txt").write_text("first\n")
    git(directory, "init", "-q")
    git(directory, "add", "rows.csv", "notes.txt")
    git(directory, "commit", "-q", "-m", "data")
    (directory / "notes.txt").write_text("first\nchanged, not committed\n")
    result = run_cli(["train", *DATA, *TINY, *DETERMINISTIC], cwd=directory)
    assert result.returncode == 0, result.stderr[-3000:]
    return directory


@pytest.fixture(scope="module")
def run(workdir: Path):
    (found,) = runs_of(workdir, "rows")
    return found


def test_the_run_page_lists_its_dataset(workdir: Path, run) -> None:
    (entry,) = run.inputs.dataset_inputs
    dataset, tags = entry.dataset, {t.key: t.value for t in entry.tags}
    assert dataset.name == "rows" and dataset.digest == run.data.tags["trainpipe.data.digest"]
    assert dataset.source_type == "local" and "rows.csv" in json.loads(dataset.source)["uri"]
    columns = [c["name"] for c in json.loads(dataset.schema)["mlflow_colspec"]]
    assert columns == ["a", "b", "c", "d", "species"]
    assert json.loads(dataset.profile) == {"num_rows": 240}
    assert tags["mlflow.data.context"] == "training"
    assert sum(int(tags[f"trainpipe.rows.{s}"]) for s in ("train", "val", "test")) == 240
    assert tags["trainpipe.split_digest"] == run.data.tags["trainpipe.data.split_digest"]


def test_the_run_records_code_environment_command_and_seed(workdir: Path, run) -> None:
    tags = run.data.tags
    assert tags["trainpipe.git.dirty"] == "true" and len(tags["mlflow.source.git.commit"]) == 40
    assert tags["trainpipe.seed"] == "42"
    assert tags["trainpipe.command"].startswith("trainpipe train data=csv")
    assert tags["trainpipe.env.cuda"] and tags["trainpipe.env.gpus"]
    assert tags["trainpipe.version.python"] and tags["trainpipe.version.torch"]
    client = client_for(workdir)
    lineage = {a.path for a in client.list_artifacts(run.info.run_id, "lineage")}
    assert lineage == {"lineage/requirements.txt", "lineage/uncommitted.patch"}
    local = Path(client.download_artifacts(run.info.run_id, "lineage", str(workdir / "dl")))
    assert "+changed, not committed" in (local / "uncommitted.patch").read_text()
    assert "\ntorch==" in "\n" + (local / "requirements.txt").read_text()


def test_the_registered_version_carries_a_model_card_and_plots(workdir: Path, run) -> None:
    client = client_for(workdir)
    version = client.get_model_version("rows", "1")
    assert version.run_id == run.info.run_id
    assert version.tags["model_card"] == "model_card/model_card.md"
    files = {a.path for a in client.list_artifacts(version.run_id, "model_card")}
    assert files == {
        "model_card/model_card.md",
        "model_card/learning_curves.png",
        "model_card/confusion_matrix.png",
    }
    card_dir = Path(client.download_artifacts(version.run_id, "model_card", str(workdir / "dl")))
    card = (card_dir / "model_card.md").read_text()
    assert "## Intended use" in card and "## Lineage" in card
    assert run.data.tags["trainpipe.data.digest"] in card
    assert f"| test/acc | {run.data.metrics['test/acc']:.6g} |" in card
    for png in ("learning_curves.png", "confusion_matrix.png"):
        assert (card_dir / png).read_bytes()[:4] == b"\x89PNG"


def test_the_ui_opens_on_training_runs_and_shows_best_val_a_description_and_system_metrics(
    workdir: Path, run
) -> None:
    client = client_for(workdir)
    experiment = client.get_experiment_by_name("rows")
    # MLflow 3's UI opens an experiment without this tag on its GenAI overview
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    metrics, tags = run.data.metrics, run.data.tags
    val = {k for k in metrics if k.startswith("val/")}
    assert val and {f"best/{k}" for k in val} <= set(metrics)
    best_acc = metrics["best/val/acc"]
    history = [m.value for m in client.get_metric_history(run.info.run_id, "val/acc")]
    assert best_acc == pytest.approx(max(history))  # the kept checkpoint's, not the last one's
    description = tags["mlflow.note.content"]
    assert "`best/val/*`: the **best checkpoint** (by `val/acc` (max)" in description
    assert "the run page shows the **last** one" in description
    for key in ("cpu_utilization_percentage", "system_memory_usage_megabytes"):
        assert f"system/{key}" in metrics, key


def test_the_model_version_description_is_the_model_card_with_its_plots(workdir: Path, run) -> None:
    client = client_for(workdir)
    version = client.get_model_version("rows", "1")
    description, run_id = version.description, run.info.run_id
    assert description.startswith(f"Trained by run [{run_id}](#/experiments/")
    assert "# Model card: rows" in description and "## Metrics" in description
    assert len(description) <= 5000  # what MLflow's SQL stores keep
    for png in ("learning_curves.png", "confusion_matrix.png"):
        image = f"(get-artifact?path=model_card/{png}&run_uuid={run_id})"
        page = f"(#/experiments/{run.info.experiment_id}/runs/{run_id}/artifacts/model_card/{png})"
        assert image in description and page in description, png
    assert "model_card/model_card.md" in description  # the full card, linked


def test_reproduce_on_the_cpu_gives_the_same_test_metrics(workdir: Path, run) -> None:
    result = run_cli(["reproduce", "models:/rows/1"], cwd=workdir)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "reproduced models:/rows/1 exactly" in result.stdout
    (again,) = [r for r in runs_of(workdir, "rows") if r.info.run_id != run.info.run_id]
    assert again.data.tags["trainpipe.reproduces"] == "models:/rows/1"
    assert again.info.run_name.startswith("reproduce-v1-")
    test_metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("test/")}
    assert {k: again.data.metrics[k] for k in test_metrics} == test_metrics
    assert len(client_for(workdir).search_model_versions("name='rows'")) == 1  # no new version


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("models:/nope/1", "unknown registered model 'nope'"),
        ("models:/rows/9", "rows has no version 9"),
        ("rows/1", "expected models:/NAME/VERSION"),
    ],
)
def test_reproduce_of_an_unknown_model_is_one_line(workdir: Path, run, uri: str, says: str) -> None:
    result = run_cli(["reproduce", uri], cwd=workdir)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and says in result.stderr


def test_reproduce_refuses_changed_data(workdir: Path, run) -> None:
    original = (workdir / "rows.csv").read_bytes()
    runs_before = len(runs_of(workdir, "rows"))
    write_csv(workdir / "rows.csv", seed=3)
    try:
        result = run_cli(["reproduce", "models:/rows/1"], cwd=workdir)
    finally:
        (workdir / "rows.csv").write_bytes(original)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "is not the data models:/rows/1 was trained on" in result.stderr
    assert len(runs_of(workdir, "rows")) == runs_before


def test_reproduce_with_the_data_file_deleted_says_it_is_missing(workdir: Path, run) -> None:
    moved = workdir / "rows.csv.moved"
    (workdir / "rows.csv").rename(moved)
    try:
        result = run_cli(["reproduce", "models:/rows/1"], cwd=workdir)
    finally:
        moved.rename(workdir / "rows.csv")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "data.path: rows.csv is missing" in line, line
    assert "e3b0c442" not in line and "not the data" not in line
