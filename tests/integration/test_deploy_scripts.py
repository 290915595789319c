"""The deployment scripts run for real, each in a subprocess: the SLURM sbatch script under bash
with a fake SLURM (`srun`, `scontrol`, `torchrun` stand-ins), the submitit launcher configs
composed through the real CLI, and a --multirun submission through Hydra's SLURM launcher up to a
fake `sbatch`. No Docker, no real SLURM. The static checks are in
tests/unit/test_deploy_files.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import run_cli
from tests.unit.test_deploy_files import SBATCH

SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
LOCAL_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"


# ---------------------------------------------------------------- SLURM sbatch script


def test_sbatch_script_is_valid_bash() -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    result = subprocess.run([bash, "-n", str(SBATCH)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


FAKE_TORCHRUN = """#!/bin/bash
trap 'echo TERM > "$FAKE_OUT.term"; exit 75' TERM   # like trainpipe: checkpoint, exit 75
"$FAKE_PYTHON" -c 'import json, os, sys; print(json.dumps({"argv": sys.argv[1:],
  "uri": os.environ.get("MLFLOW_TRACKING_URI")}))' "$@" > "$FAKE_OUT"
sleep "${FAKE_SLEEP:-0}" & wait $!
exit 7
"""


@pytest.fixture
def fake_slurm(tmp_path: Path) -> dict[str, str]:
    """PATH with fake `srun` (runs its command once), `scontrol` and `torchrun` (records its argv)."""
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "srun": '#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n',
        "scontrol": "#!/bin/bash\necho gpu-node-07\necho gpu-node-08\n",
        "torchrun": FAKE_TORCHRUN,
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MLFLOW_TRACKING"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        SLURM_NNODES="2",
        SLURM_GPUS_ON_NODE="4",
        SLURM_JOB_ID="4242",
        SLURM_JOB_NODELIST="gpu-node-[07-08]",
        SLURM_SUBMIT_DIR=str(tmp_path),
        FAKE_OUT=str(tmp_path / "torchrun.json"),
        FAKE_PYTHON=sys.executable,
    )
    return env


def test_sbatch_script_passes_overrides_and_tracking_uri_to_every_node(
    fake_slurm: dict[str, str], tmp_path: Path
) -> None:
    result = subprocess.run(
        ["bash", str(SBATCH), "model=cnn", "run_name=with space"],
        env=fake_slurm,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 7, result.stderr  # torchrun's exit status comes back
    seen = json.loads((tmp_path / "torchrun.json").read_text())
    assert seen["argv"] == [
        "--nnodes=2",
        "--nproc_per_node=4",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=gpu-node-07:29500",
        "--rdzv_id=4242",
        "-m",
        "trainpipe",
        "train",
        "trainer=ddp",
        "trainer.num_nodes=2",
        "trainer.devices=4",
        "model=cnn",
        "run_name=with space",
    ]
    assert seen["uri"] == f"sqlite:///{tmp_path}/mlflow.db"

    fake_slurm["MLFLOW_TRACKING_URI"] = "http://tracking:5000"
    subprocess.run(["bash", str(SBATCH)], env=fake_slurm, cwd=tmp_path, timeout=30)
    assert json.loads((tmp_path / "torchrun.json").read_text())["uri"] == "http://tracking:5000"


def test_sbatch_script_turns_the_usr1_warning_into_a_clean_stop(
    fake_slurm: dict[str, str], tmp_path: Path
) -> None:
    """SLURM's `--signal=B:USR1@…` goes to the batch shell: it must not die of it (default action)
    but pass SIGTERM to the ranks (which checkpoint and exit 75) and wait for them."""
    fake_slurm["FAKE_SLEEP"] = "2"
    proc = subprocess.Popen(
        ["bash", str(SBATCH)], env=fake_slurm, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 10
    while not (tmp_path / "torchrun.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    _, stderr = proc.communicate(timeout=30)
    assert "USR1 received" in stderr
    assert (tmp_path / "torchrun.json.term").exists()  # the ranks were told to stop
    assert proc.returncode == 75, stderr  # waited for them; their exit status comes back


# ---------------------------------------------------------------- Hydra submitit launcher configs


def launcher_config(cwd: Path, name: str) -> Any:
    """The `hydra.launcher` node printed by `trainpipe train hydra/launcher=NAME --cfg hydra`.
    (Hydra refuses --cfg together with --multirun; the launcher group composes the same either
    way.) Keys are read one by one, so the node's own interpolations resolve on access."""
    from omegaconf import OmegaConf

    result = run_cli(["train", f"hydra/launcher={name}", "--cfg", "hydra"], cwd=cwd, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return OmegaConf.create(yaml.safe_load(result.stdout)).hydra.launcher


def test_slurm_launcher_config_composes_with_one_task_per_gpu(tmp_path: Path) -> None:
    launcher = launcher_config(tmp_path, "slurm")
    assert launcher["_target_"] == SLURM_LAUNCHER
    assert launcher["gpus_per_node"] == 1
    assert launcher["tasks_per_node"] == launcher["gpus_per_node"]
    assert launcher["partition"] is None
    assert launcher["signal_delay_s"] > 0 and launcher["max_num_timeout"] >= 1  # requeue possible
    assert launcher["cpus_per_task"] and launcher["mem_gb"] and launcher["timeout_min"]
    assert any("MLFLOW_TRACKING_URI" in line for line in launcher["setup"])


def test_local_launcher_config_composes(tmp_path: Path) -> None:
    launcher = launcher_config(tmp_path, "local")
    assert launcher["_target_"] == LOCAL_LAUNCHER
    assert launcher["gpus_per_node"] == 0 and launcher["tasks_per_node"] == 1


@pytest.mark.slow
def test_slurm_launcher_submits_one_array_with_a_task_per_gpu(tmp_path: Path) -> None:
    """The real Hydra → submitit → sbatch path, up to the submission (a fake `sbatch` records the
    job script it is given and refuses it, so the sweep stops there)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "job.sbatch"
    fake = bin_dir / "sbatch"
    fake.write_text(
        f'#!/bin/bash\ncp "${{@: -1}}" {record}\necho "sbatch: test double" >&2\nexit 1\n'
    )
    fake.chmod(0o755)
    (bin_dir / "srun").write_text("#!/bin/bash\nexit 1\n")  # submitit checks srun is there
    (bin_dir / "srun").chmod(0o755)
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_cli(
        [
            "train",
            "--multirun",
            "hydra/launcher=slurm",
            "hydra.launcher.gpus_per_node=2",
            "hydra.launcher.partition=gpu",
            "logger=none",
            "model.optimizer.lr=0.001,0.002",
        ],
        cwd=workdir,
        timeout=120,
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    assert result.returncode != 0 and "sbatch: test double" in result.stderr, result.stderr[-3000:]
    script = record.read_text()
    for line in (
        "#SBATCH --array=0-1%2",  # both jobs of the sweep; %min(jobs, array_parallelism)
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --ntasks-per-node=2",  # one task per GPU
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --partition=gpu",
        "#SBATCH --signal=USR2@120",  # submitit's timeout/preemption signal
    ):
        assert line in script.splitlines(), (line, script)
    assert 'test -n "$MLFLOW_TRACKING_URI" || export MLFLOW_TRACKING_URI=' in script
    assert "-m submitit.core._submit" in script
