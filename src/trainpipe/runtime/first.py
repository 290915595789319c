"""Work every process of a torchrun needs, done by local rank 0 first: the others wait for it and
then do the same work, which finds rank 0's results in the node's cache (the data preparation:
rank 0 builds the `datasets` cache, the others load it instead of building it alongside).

The ranks meet through a file, not torch.distributed: the work runs before the process group is
up. The file is named after torchrun's run id and restart count, so a restarted or later run
never mistakes an old one for its own; rank 0 failing (bad data: exit 2) ends the run, and
torchrun stops the ranks still waiting.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from trainpipe.runtime.ranks import global_rank, local_rank

log = logging.getLogger(__name__)
T = TypeVar("T")
POLL_S = 0.1
READY_DIR = ".ready"  # under the cache dir: one empty file per torchrun (re)start that prepared


def ready_file(cache_dir: str | Path) -> Path | None:
    """Where local rank 0 says it is done; None outside a torchrun of more than one process."""
    if int(os.environ.get("LOCAL_WORLD_SIZE", "1")) <= 1 or "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    run = os.environ["TORCHELASTIC_RUN_ID"]
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return Path(cache_dir).expanduser() / READY_DIR / f"{run}-{restart}"


def local_rank_zero_first(work: Callable[[], T], cache_dir: str | Path, what: str) -> T:
    """`work()` on local rank 0, then on the other ranks of this node (see the module docstring);
    `what` names the work in the waiting ranks' log line."""
    ready = ready_file(cache_dir)
    if ready is None:
        return work()
    if local_rank() == 0:
        result = work()
        ready.parent.mkdir(parents=True, exist_ok=True)
        ready.touch()
        return result
    started = time.monotonic()
    while not ready.exists():
        time.sleep(POLL_S)
    waited = time.monotonic() - started
    log.info("rank %d waited %.1fs for local rank 0 to %s", global_rank(), waited, what)
    return work()
