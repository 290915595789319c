"""Where a job starts: fresh, from its own newest valid checkpoint, or from a given one.

`resume=auto` (default) takes the newest `checkpoints/step-*.ckpt` that loads, is complete and
was made by the same model/data config; a damaged one is reported and skipped. A checkpoint is a
file or, under trainer=fsdp2, a directory of shards (runtime/checkpoint_io.py): a directory is
judged by its metadata and by every shard its index names being there in full. `resume=never`
moves the previous attempt aside (`attempts/<n>/`) and starts a new MLflow run. `resume=<path>`
starts from that checkpoint. Every rank reaches the same decision from the same files, before any
rank writes anything.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from trainpipe.errors import ConfigError
from trainpipe.runtime.checkpoint_io import checkpoint_contents, step_checkpoints

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("state_dict", "optimizer_states", "loops", "callbacks", "global_step", "epoch")
ATTEMPT_ITEMS = ("checkpoints", "tracking", "job.json", "model")


def checkpoint_problem(path: Path, model_fingerprint: str) -> str | None:
    """Why `path` cannot be resumed from (None if it can)."""
    try:
        checkpoint = checkpoint_contents(path)
    except Exception as err:  # truncated, corrupt, or holding types we refuse to unpickle
        return f"unreadable ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        return f"incomplete (no {', '.join(missing)})"
    identity = next(
        (v for k, v in checkpoint["callbacks"].items() if k.startswith("RunIdentity")), {}
    )
    found = identity.get("config_fingerprint")
    if found is not None and found != model_fingerprint:
        return f"made by a different model/data config (fingerprint {found}, this job {model_fingerprint})"
    return None


def newest_valid_checkpoint(directory: Path, model_fingerprint: str) -> Path | None:
    for _, path in step_checkpoints(directory):
        problem = checkpoint_problem(path, model_fingerprint)
        if problem is None:
            return path
        log.warning("skipping checkpoint %s: %s", path, problem)
    return None


def resume_point(resume: str, output_dir: Path, model_fingerprint: str) -> Path | None:
    """The checkpoint to start from (None: start fresh), per the `resume` setting."""
    if resume == "never":
        return None
    if resume == "auto":
        found = newest_valid_checkpoint(output_dir / "checkpoints", model_fingerprint)
        if found is not None:
            log.info("resuming from %s", found)
        return found
    path = Path(resume)
    if not path.exists():
        raise ConfigError(
            "resume", f"no checkpoint file at {resume!r} (use auto, never or a .ckpt path)"
        )
    problem = checkpoint_problem(path, model_fingerprint)
    if problem is not None:
        raise ConfigError("resume", f"cannot resume from {resume!r}: {problem}")
    return path


def archive_previous_attempt(output_dir: Path) -> Path | None:
    """`resume=never`: move the last attempt's checkpoints, journal and state to attempts/<n>/."""
    present = [output_dir / name for name in ATTEMPT_ITEMS if (output_dir / name).exists()]
    if not present:
        return None
    attempts = output_dir / "attempts"
    number = 1 + max((int(p.name) for p in attempts.glob("*") if p.name.isdigit()), default=0)
    target = attempts / str(number)
    target.mkdir(parents=True)
    for item in present:
        shutil.move(str(item), target / item.name)
    return target
