"""Deployment files are consistent with the repo: Dockerfile.cuda, .dockerignore, the SLURM sbatch
script and the submitit launcher configs. Fast: no Docker, no SLURM (fake `srun`/`scontrol`)."""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, run_cli

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

DOCKERFILE = REPO / "Dockerfile.cuda"
DOCKERIGNORE = REPO / ".dockerignore"
SBATCH = REPO / "scripts" / "slurm" / "train.sbatch"
SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
LOCAL_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"


# ---------------------------------------------------------------- Dockerfile and .dockerignore


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        name, _, args = text.partition(" ")
        result.append((name.upper(), args.strip()))
    return result


def arg_defaults() -> dict[str, str]:
    """Default of every ARG (global ones before FROM and per-stage ones alike)."""
    defaults = {}
    for name, args in instructions():
        if name == "ARG" and "=" in args:
            key, _, value = args.partition("=")
            defaults[key.strip()] = value.strip().strip('"')
    return defaults


def expand(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables[m.group(1) or m.group(2)], text)


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not JSON exec form: {args}"
    return value


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(is_exception, regex) per .dockerignore line, Docker's matching rules (anchored at the context
    root, `*` within one path segment, `**` across segments, `!` re-includes, last match wins)."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = line.lstrip("!").strip().strip("/")
        regex = ""
        i = 0
        while i < len(line):
            if line.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif line.startswith("**", i):
                regex += ".*"
                i += 2
            elif line[i] == "*":
                regex += "[^/]*"
                i += 1
            elif line[i] == "?":
                regex += "[^/]"
                i += 1
            elif line[i] == "[":
                end = line.index("]", i)
                regex += line[i : end + 1]
                i = end + 1
            else:
                regex += re.escape(line[i])
                i += 1
        patterns.append((negate, re.compile(regex + r"\Z")))
    return patterns


def excluded(relative: str) -> bool:
    """Would Docker leave `relative` (a path inside the repo) out of the build context?"""
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for negate, regex in dockerignore_patterns():
        if any(regex.match(c) for c in candidates):
            verdict = not negate
    return verdict


def test_dockerignore_matcher_follows_docker_rules() -> None:
    assert excluded(".venv/bin/python")
    assert excluded("src/trainpipe/__pycache__/cli.cpython-311.pyc")
    assert not excluded("src/trainpipe/data/prepare.py")  # `data` is anchored at the root
    assert excluded("data/rows.csv")


def test_dockerignore_keeps_environments_outputs_and_stores_out() -> None:
    for path in (".venv", "outputs", "mlflow.db", ".git", ".trainpipe_cache", "mlruns"):
        assert excluded(path), path
        assert excluded(f"{path}/anything"), path
    assert excluded("mlflow.db-journal")


def copy_sources() -> list[str]:
    sources = []
    for name, args in instructions():
        if name != "COPY":
            continue
        words = exec_form(args) if args.startswith("[") else shlex.split(args)
        flags = [w for w in words if w.startswith("--")]
        assert not any(f.startswith("--from") for f in flags), "multi-stage COPY: extend this test"
        sources += [w for w in words if not w.startswith("--")][:-1]
    return sources


def test_every_copy_source_exists_and_is_in_the_build_context() -> None:
    sources = copy_sources()
    assert {"pyproject.toml", "src", "configs"} <= set(sources)
    for source in sources:
        path = REPO / source
        assert path.exists(), f"COPY {source}: not in the repo"
        assert not excluded(source), f"COPY {source}: excluded by .dockerignore"
        if path.is_dir():
            files = [
                p.relative_to(REPO).as_posix()
                for p in path.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
            ]
            assert files, f"COPY {source}: empty"
            dropped = [f for f in files if excluded(f)]
            assert not dropped, f".dockerignore drops files the image needs: {dropped[:5]}"


def test_pyproject_readme_is_copied_when_declared() -> None:
    readme = tomllib.loads((REPO / "pyproject.toml").read_text())["project"].get("readme")
    if isinstance(readme, str):
        assert readme in copy_sources(), "hatchling needs the readme to build the wheel"


def cuda_major_minor(text: str) -> tuple[int, int]:
    match = re.search(r"(\d+)\.(\d+)", text)
    assert match, text
    return int(match.group(1)), int(match.group(2))


def test_base_image_cuda_equals_torch_wheel_index_cuda() -> None:
    defaults = arg_defaults()
    (image,) = [expand(args, defaults) for name, args in instructions() if name == "FROM"]
    match = re.fullmatch(r"nvidia/cuda:(\d+\.\d+(?:\.\d+)?)-\S*runtime\S*", image)
    assert match, f"not a CUDA runtime base image: {image}"
    image_cuda = cuda_major_minor(match.group(1))

    installs = [args for name, args in instructions() if name == "RUN" and "torch" in args]
    torch_install = next(a for a in installs if re.search(r"pip install\s+\S*torch", a))
    index = re.search(r"--(?:extra-)?index-url[ =]\"?([^\s\"]+)", torch_install)
    assert index, "torch must come from a PyTorch wheel index"
    index_url = expand(index.group(1), defaults)
    wheel = re.search(r"/whl/cu(\d+)(\d)/?$", index_url)
    assert wheel, f"not a CUDA wheel index: {index_url}"
    assert (int(wheel.group(1)), int(wheel.group(2))) == image_cuda, (
        f"base image CUDA {image_cuda} != torch index {index_url}"
    )


def test_entrypoint_is_the_trainpipe_console_script() -> None:
    (entrypoint,) = [args for name, args in instructions() if name == "ENTRYPOINT"]
    assert exec_form(entrypoint) == ["trainpipe"]
    (cmd,) = [args for name, args in instructions() if name == "CMD"]
    assert exec_form(cmd) == ["--help"]

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["trainpipe"].partition(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_image_runs_as_a_non_root_user() -> None:
    users = [expand(args, arg_defaults()) for name, args in instructions() if name == "USER"]
    assert users, "no USER: the container would run as root"
    user, _, group = users[-1].partition(":")
    assert user not in ("root", "0") and group not in ("root", "0"), users[-1]


def test_image_keeps_data_outputs_and_tracking_on_volumes() -> None:
    env = " ".join(args for name, args in instructions() if name == "ENV")
    for key in ("MLFLOW_TRACKING_URI", "TRAINPIPE_CACHE_DIR", "HF_HOME"):
        assert f"{key}=" in env, key
    volumes = [v for name, args in instructions() if name == "VOLUME" for v in exec_form(args)]
    assert len(volumes) >= 3

    def on_a_volume(path: str) -> bool:
        return any(path == v or path.startswith(v + "/") for v in volumes)

    uri = re.search(r"MLFLOW_TRACKING_URI=sqlite:///(\S+)", env)
    assert uri and on_a_volume(uri.group(1)), "the default sqlite store must live on a volume"
    # with a sqlite store MLflow puts artifacts (the logged/registered models) in ./mlruns
    workdir = [args for name, args in instructions() if name == "WORKDIR"][-1]
    assert on_a_volume(f"{workdir.rstrip('/')}/mlruns"), "MLflow artifacts would be lost"


# ---------------------------------------------------------------- SLURM sbatch script


def test_sbatch_script_is_valid_bash() -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    result = subprocess.run([bash, "-n", str(SBATCH)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_sbatch_script_runs_trainpipe_under_torchrun_with_rendezvous() -> None:
    text = SBATCH.read_text()
    assert re.search(r"^#SBATCH --signal=B:USR1@\d+", text, re.M)
    assert re.search(r"^#SBATCH --requeue", text, re.M)
    assert re.search(r"^#SBATCH --ntasks-per-node=1$", text, re.M)
    assert not re.search(r"^\s*exec\s+srun", text, re.M), "exec would drop the signal trap"
    command = text[text.index("srun ") :]
    for piece in (
        "torchrun",
        "--nnodes=",
        "--nproc_per_node=",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=",
        "--rdzv_id=",
        "-m trainpipe train",
        "trainer=ddp",
        '"$@"',
    ):
        assert piece in command, piece


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


def test_slurm_launcher_overrides_keep_one_task_per_gpu() -> None:
    """`hydra.launcher.gpus_per_node=4` alone gives 4 tasks per node (the interpolation follows)."""
    from omegaconf import OmegaConf

    from trainpipe.config.compose import compose

    cfg = compose("train", ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=4"])
    assert cfg.hydra.launcher.tasks_per_node == 4
    # Hydra's instantiate resolves the launcher node (twice for lists: an escaped `\${` comes back
    # as an interpolation), so the shell lines must hold no `${`; the URI is expanded on the node
    setup = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)["setup"]
    assert all("${" not in line for line in setup), setup
    assert any("$MLFLOW_TRACKING_URI" in line for line in setup), setup


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
