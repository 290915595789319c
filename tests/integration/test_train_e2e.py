"""`trainpipe train` end to end on the default data: tracked run, registered model, eval."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TINY, run_cli, run_without_pickle, with_empty_store
from tests.integration.mlflow_store import client_for, metric_steps, runs_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, store_template: Path
) -> tuple[Path, subprocess.CompletedProcess]:
    """One short `trainpipe train` in a fresh git repo (so the commit tag is checkable)."""
    workdir = with_empty_store(tmp_path_factory.mktemp("e2e"), store_template)
    subprocess.run(["git", "init", "-q"], cwd=workdir, check=True)
    subprocess.run(
        [
            "git",
            "-c",
            "user.email=t@t",
            "-c",
            "user.name=t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        cwd=workdir,
        check=True,
    )
    result = run_cli(["train", *TINY], cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result


def test_one_run_with_params_metrics_tags_and_config(
    trained: tuple[Path, subprocess.CompletedProcess],
) -> None:
    workdir, result = trained
    (run,) = runs_of(workdir, "digits")
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model.optimizer.lr"] == "0.002"
    assert params["model.net.hidden_sizes"] == "[256, 128]"
    assert params["data.batch_size"] == "64" and params["trainer.max_epochs"] == "1"
    for key in ("val/loss", "val/acc", "val/f1", "test/loss", "test/acc", "test/f1"):
        assert key in run.data.metrics, key
    train_steps = [step for step, _ in metric_steps(workdir, run.info.run_id, "train/loss")]
    assert len(train_steps) == 5 and len(set(train_steps)) == 5  # 5 batches, each step once
    (val_step,) = [step for step, _ in metric_steps(workdir, run.info.run_id, "val/acc")]
    assert val_step == max(train_steps)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=workdir, capture_output=True, text=True
    ).stdout.strip()
    tags = run.data.tags
    assert tags["mlflow.source.git.commit"] == head
    assert tags["trainpipe.git.dirty"] in ("true", "false")
    assert tags["trainpipe.command"] == "trainpipe train " + " ".join(TINY)  # as typed
    assert tags["trainpipe.task"].startswith("classification (inferred")
    assert tags["trainpipe.paths.output_dir"].endswith(run.info.run_name)
    assert not [key for key in params if key.startswith("paths.") or key.endswith("_target_")]
    assert len(tags["trainpipe.data.digest"]) == 16
    for package in ("trainpipe", "torch", "lightning"):
        assert tags[f"trainpipe.version.{package}"]
    artifacts = {a.path for a in client_for(workdir).list_artifacts(run.info.run_id)}
    assert "config.yaml" in artifacts
    assert "mlflow ui" in result.stdout and run.info.run_id in result.stdout


def test_checkpoints_and_job_state_in_the_output_dir(
    trained: tuple[Path, subprocess.CompletedProcess],
) -> None:
    workdir, _ = trained
    (job_dir,) = (workdir / "outputs" / "train" / "digits").iterdir()
    names = sorted(p.name for p in (job_dir / "checkpoints").iterdir())
    assert any(n.startswith("step-") for n in names) and any(n.startswith("best-") for n in names)
    state = json.loads((job_dir / "job.json").read_text())
    assert state["status"] == "complete" and state["summary"]["model"] == "models:/digits/1"
    # the log file holds trainpipe's own lines (the plan's too, printed before it existed) and
    # the summary; no checkpoint load or save says "weights_only was not set"
    log = (job_dir / "train.log").read_text()
    assert "][trainpipe.data.tables][INFO] - data digits: 1437/180/180 rows" in log
    assert f"trained {job_dir.name}" in log and "model            models:/digits/1" in log
    assert "weights_only" not in log


LOAD_WITHOUT_PICKLE = """
import json, sys
import numpy as np, pandas as pd, mlflow
from sklearn.datasets import load_digits
mlflow.set_tracking_uri("sqlite:///mlflow.db")
model = mlflow.pyfunc.load_model("models:/digits/1")
rows = load_digits().data[:6]  # float64, as numpy gives it
columns = [f"pixel_{i // 8}_{i % 8}" for i in range(64)]
labels = model.predict(pd.DataFrame(rows, columns=columns))
from_array = model.predict(rows)
probabilities = model.predict(pd.DataFrame(rows, columns=columns), params={"output": "probabilities"})
print(json.dumps({
    "labels": list(map(str, labels)),
    "from_array": list(map(str, from_array)),
    "prob_columns": list(probabilities.columns),
    "prob_sums": probabilities.sum(axis=1).round(5).tolist(),
    "input_schema": model.metadata.get_input_schema() is not None,
    "params": [p.name for p in model.metadata.get_params_schema().params],
    "feature_names": model.metadata.metadata["feature_names"][:2],
}))
"""


def test_registered_model_loads_without_pickle_and_predicts(
    trained: tuple[Path, subprocess.CompletedProcess],
) -> None:
    workdir, _ = trained
    out = run_without_pickle(LOAD_WITHOUT_PICKLE, workdir)
    assert len(out["labels"]) == 6 and set(out["labels"]) <= {str(d) for d in range(10)}
    assert out["from_array"] == out["labels"]
    assert out["prob_columns"] == [str(d) for d in range(10)]
    assert out["prob_sums"] == [1.0] * 6
    assert out["input_schema"] is False and out["params"] == ["output"]  # inputs: checked by name
    assert out["feature_names"] == ["pixel_0_0", "pixel_0_1"]


def test_registered_version_is_tagged_and_weights_are_safetensors(
    trained: tuple[Path, subprocess.CompletedProcess],
) -> None:
    workdir, _ = trained
    client = client_for(workdir)
    version = client.get_model_version("digits", "1")
    (run,) = runs_of(workdir, "digits")
    assert version.tags["run_id"] == run.info.run_id == version.run_id
    assert float(version.tags["test/acc"]) == pytest.approx(run.data.metrics["test/acc"], rel=1e-5)
    weights = [a.path for a in client.list_artifacts(run.info.run_id, "weights")]
    assert weights == ["weights/model.safetensors"]


def test_rerun_of_a_finished_job_does_not_retrain(
    trained: tuple[Path, subprocess.CompletedProcess],
) -> None:
    workdir, _ = trained
    result = run_cli(["train", *TINY], cwd=workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "already complete" in result.stdout
    assert len(runs_of(workdir, "digits")) == 1


def test_eval_of_a_registry_uri_and_a_checkpoint_logs_evaluation_runs(
    trained: tuple[Path, subprocess.CompletedProcess],
) -> None:
    workdir, _ = trained
    result = run_cli(["eval", "model_uri=models:/digits/1"], cwd=workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    (job_dir,) = (workdir / "outputs" / "train" / "digits").iterdir()
    best = next((job_dir / "checkpoints").glob("best-*.ckpt"))
    result = run_cli(["eval", f"model_uri={best}"], cwd=workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = runs_of(workdir, "evaluation")
    assert len(runs) == 2
    by_uri = {r.data.tags["trainpipe.model_uri"]: r for r in runs}
    registry_acc = by_uri["models:/digits/1"].data.metrics["test/acc"]
    checkpoint_acc = by_uri[str(best)].data.metrics["test/acc"]
    assert 0.0 < registry_acc <= 1.0
    assert registry_acc == pytest.approx(checkpoint_acc)  # same weights, same test split


def test_eval_of_a_missing_model_is_a_clear_error(
    trained: tuple[Path, subprocess.CompletedProcess],
) -> None:
    workdir, _ = trained
    result = run_cli(["eval", "model_uri=models:/no_such_model/3"], cwd=workdir)
    assert result.returncode == 2
    assert "model_uri" in result.stderr and "no_such_model" in result.stderr


def test_generate_and_export_refuse_a_model_whose_task_cannot(
    trained: tuple[Path, subprocess.CompletedProcess],
) -> None:
    workdir, _ = trained
    (job_dir,) = (workdir / "outputs" / "train" / "digits").iterdir()
    best = next((job_dir / "checkpoints").glob("best-*.ckpt"))
    generated = run_cli(["generate", f"model_uri={best}", "prompt=hi"], cwd=workdir)
    assert generated.returncode == 2
    assert "is a classification model, not a language model" in generated.stderr
    exported = run_cli(["export", str(best), str(workdir / "hf")], cwd=workdir)
    assert exported.returncode == 2
    assert "only language models export to hf" in exported.stderr
    assert not (workdir / "hf").exists()
