"""Image classification end to end: a folder of pictures → a trained, registered ResNet that
answers paths, bytes and base64 — in process and over `mlflow models serve`'s REST API; the
same job killed mid-epoch (augmenting in worker processes) resumes bit for bit; bad pictures and
bad settings stop at once with one line."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli, run_without_pickle, with_empty_store
from tests.images_data import COLOURS, write_folder
from tests.integration.mlflow_server import free_port
from tests.integration.mlflow_store import client_for, load_pyfunc, metric_steps, runs_of

pytestmark = pytest.mark.slow

# 3 classes x 20 pictures (one of them corrupt, left out): 47 train / 6 val / 6 test, batches of
# 8 → 6 steps an epoch; augmentation in 2 worker processes; a checkpoint every 2 steps
JOB = [
    "train",
    "data=images",
    "model=resnet",
    "data.image_size=8",
    "data.batch_size=8",
    "data.num_workers=2",
    "data.skip_bad_images=true",
    "trainer.max_epochs=2",
    "trainer.deterministic=true",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "checkpoint.every_n_steps=2",
    "run_name=pics",
]
JOB_DIR = Path("outputs/train/pics/pics")
STEPS = 12


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_folder(tmp_path_factory.mktemp("data") / "pics", per_class=20)
    (root / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # truncated
    return root


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, store_template: Path, pictures: Path
) -> tuple[Path, subprocess.CompletedProcess]:
    workdir = with_empty_store(tmp_path_factory.mktemp("images"), store_template)
    result = run_cli([*JOB, f"data.path={pictures}"], cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result


def test_a_folder_trains_and_registers_a_model_that_takes_what_users_have(
    trained: tuple[Path, subprocess.CompletedProcess], pictures: Path
) -> None:
    workdir, result = trained
    log = result.stdout + result.stderr
    assert "1 undecodable image(s) skipped" in log and "1 non-image file(s) ignored" in log
    assert "left out" in result.stdout and "1 undecodable image(s)" in result.stdout  # the summary
    assert "image_classification (inferred: image data)" in result.stdout  # task=auto
    (run,) = runs_of(workdir, "pics")
    metrics = run.data.metrics
    assert {"test/acc", "test/f1", "val/acc"} <= set(metrics)
    assert "test/top5" not in metrics  # 3 classes: top-5 would always be 1
    # per class, named after the class folders (imbalance shows there)
    assert {f"test/f1.{c}" for c in ("red", "green", "blue")} <= set(metrics)
    assert run.data.tags.get("mlflow.runName") == "pics"
    card = workdir / JOB_DIR / "model" / "model_card"
    assert (card / "confusion_matrix.png").is_file() and (card / "misclassified.png").is_file()
    assert (
        "1 undecodable image(s) (data.skip_bad_images), 1 non-image file(s)"
        in (card / "model_card.md").read_text()
    )
    spec = json.loads((workdir / JOB_DIR / "model" / "spec.json").read_text())
    assert spec["classes"] == sorted(COLOURS) and spec["image_size"] == 8
    assert len(spec["mean"]) == 3 and all(0 < s < 1 for s in spec["std"])
    paths = [str(p) for name in sorted(COLOURS) for p in sorted((pictures / name).glob("00*.png"))]
    script = f"""
import json, base64, pathlib, mlflow, pandas as pd
mlflow.set_tracking_uri("sqlite:///mlflow.db")
model = mlflow.pyfunc.load_model("models:/pics/1")
paths = {paths!r}
by_path = model.predict(pd.DataFrame({{"image": paths}}))
encoded = [base64.b64encode(pathlib.Path(p).read_bytes()).decode() for p in paths]
by_base64 = model.predict(pd.DataFrame({{"image": encoded}}))
print(json.dumps({{"path": by_path["label"].tolist(), "b64": by_base64["label"].tolist(),
                   "probabilities": by_path["probabilities"].tolist()}}))
"""
    evaluated = run_cli(["eval", "model_uri=models:/pics/1"], cwd=workdir)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    (eval_run,) = runs_of(workdir, "evaluation")
    # the registered model scores the test split as the training run's best checkpoint did
    assert eval_run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    answer = run_without_pickle(script, workdir)  # pickle refused: safetensors + JSON only
    assert answer["path"] == answer["b64"]
    truth = [Path(p).parent.name for p in paths]
    hits = sum(a == b for a, b in zip(answer["path"], truth, strict=True))
    assert hits / len(truth) >= 0.8, (answer["path"], truth)  # colours are easy to learn
    assert all(abs(sum(p) - 1) < 1e-5 for p in answer["probabilities"])


def test_the_registered_model_answers_base64_pictures_over_rest(
    trained: tuple[Path, subprocess.CompletedProcess], pictures: Path
) -> None:
    workdir, _ = trained
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    # the scoring server is `uvicorn`, run by name: this interpreter's scripts come first
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = open(workdir / "serve.log", "w")  # noqa: SIM115 (open for the server's lifetime)
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/pics/1"]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=log, stderr=log, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, (workdir / "serve.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=1) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        files = [sorted((pictures / name).glob("*.png"))[0] for name in sorted(COLOURS)]
        encoded = [base64.b64encode(f.read_bytes()).decode() for f in files]
        body = {"dataframe_split": {"columns": ["image"], "data": [[e] for e in encoded]}}
        request = urllib.request.Request(
            f"{url}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            predictions = json.loads(reply.read())["predictions"]
        assert [p["label"] for p in predictions] == [f.parent.name for f in files]
        assert all(len(p["probabilities"]) == len(COLOURS) for p in predictions)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        log.close()


def test_predict_scores_a_folder_and_a_table_of_pictures_as_the_registered_model_does(
    trained: tuple[Path, subprocess.CompletedProcess], pictures: Path, tmp_path: Path
) -> None:
    import numpy as np
    import pandas as pd

    workdir, _ = trained
    model = ["predict", "model_uri=models:/pics/1", "logger=none"]
    # a picture that does not decode stops the job, named; nothing is written
    refused = run_cli([*model, f"data.path={pictures}", "output=all.parquet"], cwd=workdir)
    assert refused.returncode == 2, refused.stderr[-2000:]
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "image 'red/broken.png' does not decode" in lines[0], lines
    assert not (workdir / "all.parquet").exists()
    # skip_bad: its row is null and counted; chunks of 16 (4 chunks, resumable order)
    args = [f"data.path={pictures}", "output=all.parquet", "skip_bad=true", "probabilities=true"]
    result = run_cli([*model, *args, "chunk_rows=16"], cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 unreadable rows" in result.stdout
    scores = pd.read_parquet(workdir / "all.parquet")
    classes = sorted(COLOURS)
    assert list(scores.columns) == ["path", "prediction", *[f"probability_{c}" for c in classes]]
    files = sorted(p.relative_to(pictures).as_posix() for p in pictures.rglob("*.*"))
    assert scores["path"].tolist() == [f for f in files if f != "README.txt"]  # sorted, no README
    broken = scores["path"] == "red/broken.png"
    assert scores[broken].drop(columns="path").isna().all(axis=None)
    good = scores[~broken]
    # the same files through the registered pyfunc: the same labels and probabilities
    expected = load_pyfunc(workdir, "models:/pics/1").predict(
        pd.DataFrame({"image": [str(pictures / p) for p in good["path"]]})
    )
    assert good["prediction"].tolist() == expected["label"].tolist()
    np.testing.assert_allclose(
        good.iloc[:, 2:].to_numpy(float), np.array(expected["probabilities"].tolist()), rtol=1e-5
    )
    # a table whose image column holds paths relative to the table's folder (as in training)
    (tmp_path / "pics").mkdir()
    table = pd.DataFrame({"id": [7, 8], "image": ["green/001.png", "blue/003.jpg"]})
    for name in table["image"]:
        (tmp_path / "pics" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "pics" / name).write_bytes((pictures / name).read_bytes())
    table.to_csv(tmp_path / "pics" / "rows.csv", index=False)
    args = [f"data.path={tmp_path / 'pics' / 'rows.csv'}", f"output={tmp_path / 'rows.csv'}"]
    result = run_cli([*model, *args, "keep=[id]"], cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pd.read_csv(tmp_path / "rows.csv")
    assert rows["id"].tolist() == [7, 8]
    by_path = good.set_index("path")["prediction"]
    assert rows["prediction"].tolist() == [by_path[name] for name in table["image"]]


def final_state(workdir: Path) -> dict:
    newest = max((workdir / JOB_DIR / "checkpoints").glob("step-*.ckpt"))
    assert newest.name == f"step-{STEPS:08d}.ckpt"
    return torch.load(newest, weights_only=True)


def test_killed_mid_epoch_with_augmenting_workers_resumes_bit_exactly(
    trained: tuple[Path, subprocess.CompletedProcess],
    pictures: Path,
    tmp_path: Path,
    store_template: Path,
) -> None:
    reference, _ = trained
    workdir = with_empty_store(tmp_path, store_template)
    job = [*JOB, f"data.path={pictures}"]
    killed = run_cli(job, cwd=workdir, TRAINPIPE_INJECT_FAULT="kill@3")  # mid epoch 0
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = run_cli(job, cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = final_state(reference), final_state(workdir)
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(tensor, got["state_dict"][name]), name
    (first,), (second,) = runs_of(reference, "pics"), runs_of(workdir, "pics")
    losses = [
        metric_steps(w, r.info.run_id, "train/loss")
        for w, r in ((reference, first), (workdir, second))
    ]
    assert len(losses[0]) == STEPS and losses[0] == losses[1]
    assert client_for(workdir).get_run(second.info.run_id).info.status == "FINISHED"


def bad_inputs(root: Path) -> None:
    """The folders and files of the bad-input cases, under `root`."""
    from PIL import Image

    from tests.images_data import picture

    good = write_folder(root / "good", per_class=2)
    broken = write_folder(root / "broken", per_class=2)
    (broken / "blue" / "cut.png").write_bytes((good / "blue" / "000.png").read_bytes()[:60])
    lonely = root / "lonely" / "cats"
    lonely.mkdir(parents=True)
    Image.fromarray(picture(COLOURS["red"], 0)).save(lonely / "a.png")
    (write_folder(root / "hollow", per_class=2) / "grey").mkdir()
    (root / "notes" / "a").mkdir(parents=True)
    (root / "notes" / "a" / "x.txt").write_text("not a picture")
    rows = ["image,label", "good/red/000.png,red", "good/blue/000.png,", "good/green/000.png,green"]
    (root / "rows.csv").write_text("\n".join(rows) + "\n")
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, root / "imagenet.pt")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["data.path=broken"], "data.path: cannot decode image blue/cut.png: "),
        (["data.path=lonely"], "has a single class (cats)"),
        (["data.path=hollow"], "hollow/grey has no images"),
        (["data.path=notes"], "has no images (1 other file(s) ignored)"),
        (["data.source=csv", "data.path=rows.csv"], "data.target: column 'label' has 1 missing"),
        (["data.path=good", "data.image_size=0"], "data.image_size: must be an int >= 1, got 0"),
        (
            ["data.path=good", "model.weights=imagenet.pt"],
            "model.weights: tensor 'conv1.weight' has shape [64, 3, 7, 7]",
        ),
    ],
)
def test_bad_pictures_and_settings_exit_2_with_one_line_and_write_nothing(
    empty_workdir: Path, args: list[str], needle: str
) -> None:
    bad_inputs(empty_workdir)
    result = run_cli(["train", "data=images", "model=resnet", *args], cwd=empty_workdir)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr[-2000:]
    assert not (empty_workdir / "outputs").exists()
    assert not (empty_workdir / "mlflow.db").exists()
