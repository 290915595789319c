"""Where a run came from: git commit (and a patch of uncommitted changes), command line,
package versions, the environment (python, torch, CUDA, GPUs) and the dataset it read."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from trainpipe.tracking.params import SECRET_KEY, redact_url

# the command as the user typed it; set by the CLI so that torchrun ranks and sweep jobs see it too
COMMAND_ENV = "TRAINPIPE_COMMAND"
# what kind of run a run is (train, eval, predict): the runs of a model's experiment told apart
RUN_TYPE_TAG = "trainpipe.run_type"


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_tags(cwd: Path | None = None) -> dict[str, str]:
    """MLflow's own source tags (commit, dirty flag) for the repo the job runs in, if any."""
    cwd = cwd or Path.cwd()
    commit = _git(["rev-parse", "HEAD"], cwd)
    if not commit:
        return {}
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    tags = {"mlflow.source.git.commit": commit, "trainpipe.git.dirty": str(bool(status)).lower()}
    remote = _git(["config", "--get", "remote.origin.url"], cwd)
    if remote:
        tags["mlflow.source.git.repoURL"] = redact_url(remote)
    return tags


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed (`shlex.join`, so it can be pasted back), secret-looking values masked."""
    words = []
    for word in argv if argv is not None else sys.argv:
        key, sep, _ = word.partition("=")
        words.append(f"{key}=***" if sep and SECRET_KEY.search(key) else redact_url(word))
    return shlex.join(words)


def versions() -> dict[str, str]:
    tags = {"trainpipe.version.python": platform.python_version()}
    for package in ("trainpipe", "torch", "lightning", "mlflow", "datasets"):
        try:
            tags[f"trainpipe.version.{package}"] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return tags


def git_patch(cwd: Path | None = None) -> str | None:
    """`git diff HEAD`: the uncommitted changes to tracked files (None outside a repo or when
    clean). Untracked files are not in it: commit or add them to make a run reproducible."""
    try:
        out = subprocess.run(
            ["git", "diff", "HEAD", "--binary"],
            cwd=cwd or Path.cwd(),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout or None


def code_version(cwd: Path | None = None) -> str:
    """The code a job runs: trainpipe's version, the git commit and a digest of any uncommitted
    changes (so an edited working tree is another version)."""
    from trainpipe import __version__

    commit = git_tags(cwd).get("mlflow.source.git.commit", "no-git")
    patch = git_patch(cwd)
    dirty = f"+{hashlib.sha256(patch.encode()).hexdigest()[:12]}" if patch else ""
    return f"trainpipe {__version__} @ {commit}{dirty}"


def frozen_requirements() -> str:
    """What `pip freeze` prints (`name==version`, sorted), read from the installed metadata, so
    it works in environments without pip (uv, conda)."""
    pins = {
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"]
    }
    return "\n".join(sorted(pins, key=str.lower)) + "\n"


def environment_tags() -> dict[str, str]:
    """The platform, the CUDA version torch was built with and the GPUs the job can see (torch
    is imported here)."""
    import torch

    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else []
    )
    return {  # python and torch versions: versions()
        "trainpipe.env.platform": platform.platform(),
        "trainpipe.env.cuda": torch.version.cuda or "none",
        "trainpipe.env.gpus": ", ".join(gpus) or "none",
    }


def dataset_input(
    name: str,
    digest: str,
    source: str,
    source_type: str,
    columns: list[dict[str, str]],
    split_sizes: dict[str, int],
    split_digest: str,
) -> tuple[dict[str, str], dict[str, str]]:
    """(MLflow Dataset fields, input tags) of the data a run trained on.

    The dataset is the source's content (`digest`, as in the `dataset_digest` version tag), which
    MLflow keeps once per experiment; how this run split it (rows per split, split digest) is
    specific to the run, so it goes into the input's tags.
    """
    dataset = {
        "name": name,
        "digest": digest,
        "source_type": source_type,  # where the data lives: local, hugging_face, code
        "source": json.dumps({"uri": source}),
        "schema": json.dumps({"mlflow_colspec": columns}),
        "profile": json.dumps({"num_rows": sum(split_sizes.values())}),
    }
    tags = {
        "mlflow.data.context": "training",
        "trainpipe.split_digest": split_digest,
        **{f"trainpipe.rows.{split}": str(rows) for split, rows in split_sizes.items()},
    }
    return dataset, tags
