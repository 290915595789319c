"""Deployment files are consistent with the repo, checked statically and in-process:
Dockerfile.cuda, .dockerignore, the SLURM sbatch script's text and the submitit launcher configs
(composed in process). No Docker, no SLURM, no child processes: the tests that run the sbatch
script or the CLI are in tests/integration/test_deploy_scripts.py."""

from __future__ import annotations

import importlib
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

DOCKERFILE = REPO / "Dockerfile.cuda"
DOCKERIGNORE = REPO / ".dockerignore"
SBATCH = REPO / "scripts" / "slurm" / "train.sbatch"


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


def pyproject_project() -> dict[str, Any]:
    """The [project] table of pyproject.toml (skips the test where tomllib is missing: Python 3.10)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_pyproject_readme_is_copied_when_declared() -> None:
    readme = pyproject_project().get("readme")
    assert isinstance(readme, str)  # pyproject declares it, so the image must have it
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

    scripts = pyproject_project()["scripts"]
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
    # with a sqlite store, artifacts (the logged/registered models) go to mlruns/ beside the database
    artifacts = f"{uri.group(1).rsplit('/', 1)[0]}/mlruns"
    assert on_a_volume(artifacts), "MLflow artifacts would be lost"


# ---------------------------------------------------------------- SLURM sbatch script


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


# ---------------------------------------------------------------- Hydra submitit launcher configs


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
