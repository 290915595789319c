"""`trainpipe sync OUTPUT_DIR [--tracking-uri URI] [--timeout S]`: replay a job's tracking journal."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainpipe.errors import USER_ERROR_EXIT_CODE


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="trainpipe sync",
        description="send a job's unsent tracking (after a tracking-server outage)",
    )
    parser.add_argument(
        "output_dir", type=Path, help="the job's output dir (it holds tracking/journal.jsonl)"
    )
    parser.add_argument("--tracking-uri", default=None, help="default: the URI the job used")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to keep retrying (default 60)"
    )
    parsed = parser.parse_args(args)
    from trainpipe.tracking.mlflow_tracker import sync

    try:
        left, journal = sync(parsed.output_dir, parsed.tracking_uri, parsed.timeout)
    except FileNotFoundError as err:
        print(f"trainpipe: {err}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    if left:
        print(
            f"trainpipe: {left} tracking operation(s) still unsent (tracking server unreachable)",
            file=sys.stderr,
        )
        return 1
    print(f"trainpipe: tracking of {parsed.output_dir} is up to date (MLflow run {journal.run_id})")
    return 0
