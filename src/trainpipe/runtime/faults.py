"""Fault injection for resilience tests and drills: `TRAINPIPE_INJECT_FAULT=<fault>@<n>`.

  kill@N                     SIGKILL this process right after optimizer step N (and its checkpoint)
  kill_before_checkpoint@N   SIGKILL after step N, before a checkpoint of step N is written
  kill_at_epoch_end@E        SIGKILL after epoch E's validation, before its end-of-epoch checkpoint
  kill_in_checkpoint_save@K  SIGKILL inside the K-th checkpoint write: temp file written, not renamed
  nan@N                      poison the batch of step N (NaN features → NaN loss)
  kill_after_chunk@N         trainpipe predict: SIGKILL right after chunk N's part file is written
  term_after_chunk@N         trainpipe predict: SIGTERM (handled: stop, exit 75) after chunk N
  rank=R:<fault>@<n>         only on global rank R

Unset in normal use: every check is an environment lookup (read when checked, not when imported,
so a process forked from one that imported trainpipe sees its own setting).
"""

from __future__ import annotations

import os
import signal

from trainpipe.runtime.ranks import global_rank

ENV = "TRAINPIPE_INJECT_FAULT"


def _parse(spec: str) -> tuple[str, int] | None:
    spec = spec.strip()
    if not spec:
        return None
    if spec.startswith("rank="):
        rank, _, spec = spec[len("rank=") :].partition(":")
        if int(rank) != global_rank():
            return None
    name, _, at = spec.partition("@")
    return name, int(at)


_parsed: dict[str, tuple[str, int] | None] = {}


def armed(name: str, at: int) -> bool:
    spec = os.environ.get(ENV, "")
    if spec not in _parsed:
        _parsed[spec] = _parse(spec)
    return _parsed[spec] == (name, at)


def die() -> None:
    """A real SIGKILL: no handler, no cleanup, no flush."""
    os.kill(os.getpid(), signal.SIGKILL)


def terminate() -> None:
    """A real SIGTERM to this process: its handler runs as for one sent by a scheduler."""
    os.kill(os.getpid(), signal.SIGTERM)
