"""Where a run came from: git commit, command line, package versions."""

from __future__ import annotations

import importlib.metadata
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from trainpipe.tracking.params import SECRET_KEY, redact_url

# the command as the user typed it; set by the CLI so that torchrun ranks and sweep jobs see it too
COMMAND_ENV = "TRAINPIPE_COMMAND"


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
