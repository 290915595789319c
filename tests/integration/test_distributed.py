"""Multi-process training on CPU (gloo): torchrun, self-launch, and the global metrics it logs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, run_cli, torchrun
from tests.integration.mlflow_store import client_for, runs_of

pytestmark = pytest.mark.slow

# full validation split, so the logged val/acc can be checked against the whole set; no dropout,
# so the ranks' steps can be compared with one process's
DDP_ARGS = ["trainer=ddp_cpu", *TINY, "trainer.limit_val_batches=1.0", "model.net.dropout=0"]


def single_job_dir(workdir: Path) -> Path:
    (job_dir,) = (workdir / "outputs" / "train" / "digits").iterdir()
    return job_dir


def whole_split_accuracy(job_dir: Path, split: str) -> float:
    """Accuracy of the job's last checkpoint over a whole split, computed in one process."""
    import numpy as np

    from trainpipe.loading import load_model
    from trainpipe.tasks import get_task

    newest = max((job_dir / "checkpoints").glob("step-*.ckpt"))
    predictor, trained = load_model(str(newest), None)
    prepared = get_task("classification").prepare(trained)
    rows = prepared.splits[split].with_format("numpy")[:]
    truth = [prepared.class_values[i] for i in rows["target"]]
    return float(np.mean(np.asarray(predictor.predict(rows["features"])) == np.asarray(truth)))


def assert_one_job_one_run_one_version(workdir: Path) -> None:
    (run,) = runs_of(workdir, "digits")
    assert run.info.status == "FINISHED"
    versions = client_for(workdir).search_model_versions("name='digits'")
    assert [str(v.version) for v in versions] == ["1"]
    job_dir = single_job_dir(workdir)
    assert any(p.name.startswith("step-") for p in (job_dir / "checkpoints").iterdir())
    assert (job_dir / "train.rank1.log").is_file()  # rank 1 logs beside rank 0, writes nothing else
    assert run.data.metrics["val/acc"] == pytest.approx(
        whole_split_accuracy(job_dir, "val"), abs=1e-6
    )


def last_checkpoint(workdir: Path) -> dict:
    return torch.load(
        max((single_job_dir(workdir) / "checkpoints").glob("step-*.ckpt")), weights_only=True
    )


def test_torchrun_two_processes_make_one_run_and_train_like_one_process(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    result = torchrun(["train", *DDP_ARGS], cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_one_job_one_run_one_version(workdir)
    # the data is prepared once: local rank 0 builds its cache, rank 1 waits for it, then loads it
    log = result.stdout
    preparations = re.findall(r"^data .*, cache (built|reused), ", log, re.MULTILINE)
    waits = re.findall(r"^rank 1 waited [\d.]+s for local rank 0 to prepare the data$", log, re.M)
    assert preparations == ["built", "reused"] and len(waits) == 1, log[-3000:]

    # 2 processes × batch 64 take the same steps as 1 process × batch 128 (dropout is off)
    single = tmp_path_factory.mktemp("single")
    alone = ["trainer=cpu", *TINY, "data.batch_size=128", "model.net.dropout=0", "logger=none"]
    one = run_cli(["train", *alone], cwd=single)
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = last_checkpoint(workdir), last_checkpoint(single)
    assert a["global_step"] == b["global_step"] == 5
    weights = {k: v for k, v in a["state_dict"].items() if k.startswith("model.net.")}
    assert weights
    for name, weight in weights.items():
        assert torch.allclose(weight, b["state_dict"][name], atol=1e-5), name


def test_self_launch_gives_the_same_structure(workdir: Path) -> None:
    result = run_cli(["train", *DDP_ARGS, "trainer.devices=2"], cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "starting 2 processes" in result.stderr
    assert_one_job_one_run_one_version(workdir)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["trainer=ddp_cpu", "trainer.devices=64"], "trainer.devices: asks for 64 CPU processes"),
        (["trainer=fsdp", "trainer.accelerator=cpu"], "trainer.accelerator: FSDP"),
        (["trainer=gpu"], "trainer.accelerator: is 'gpu' but no CUDA device is visible"),
        (
            ["--multirun", "trainer=ddp_cpu", "trainer.devices=2", "seed=1,2"],
            "cannot start 2 processes",
        ),
    ],
)
def test_launch_errors_are_clear_and_exit_2(workdir: Path, args: list[str], needle: str) -> None:
    if torch.cuda.is_available() and "trainer=gpu" in args:
        pytest.skip("this machine has a GPU")
    result = run_cli(["train", *args], cwd=workdir)
    assert result.returncode == 2, result.stderr[-2000:]
    assert needle in result.stderr
    assert not (workdir / "outputs").exists()


def test_torchrun_world_that_disagrees_with_the_config_is_named(workdir: Path) -> None:
    result = torchrun(["train", "trainer=ddp_cpu", "trainer.devices=3", *TINY], cwd=workdir)
    assert result.returncode != 0
    assert "trainer.devices: is 3 but torchrun started 2 process(es)" in result.stderr
    assert not (workdir / "outputs").exists()
