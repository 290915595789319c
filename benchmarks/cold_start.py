"""Start-up costs: `trainpipe --help`, `trainpipe train --cfg job`, and launch → first training step.

The first-step time is the ThroughputMonitor's `time.time()` at the first train batch minus the
`time.time()` this script took just before launching `trainpipe train debug=fast`. The baseline is
a bare `python -c "import lightning"` measured in the same run (the least any Lightning-based
trainer pays before its first step). "cold" = a fresh directory (the digits cache and mlflow.db are
built by the run); "warm" = the same directory again with a new run name (cache and database exist).
Each number is the median of its repeats; the measurements are interleaved.

    python benchmarks/cold_start.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import common

CLI_GOAL_S = 1.0
# a smoke run that still registers its model (debug runs register nothing by default)
FAST = ["debug=fast", "registry.register=true"]


def start_once(kind: str, warm_dir: Path) -> tuple[dict[str, Any], float]:
    """One `trainpipe train debug=fast`: in a new directory (cold) or in `warm_dir` under a new run name."""
    run_args = [*FAST, f"run_name=start-{time.time_ns()}"]
    if kind == "warm":
        return common.run_trainpipe(run_args, warm_dir)
    with common.workdir() as fresh:
        return common.run_trainpipe(run_args, fresh)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--repeats", type=int, default=3, help="repeats of each measurement (median taken)"
    )
    args = parser.parse_args()
    watch = common.CpuWatch()
    common.print_header(
        "cold start: launch → first training step, CLI response times",
        f"trainpipe train debug=fast (digits, default MLP, MLflow sqlite, registry on); {args.repeats} interleaved repeats, medians",
    )
    tp = common.trainpipe_command()
    times: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        times.setdefault(key, []).append(value)

    with common.workdir() as warm_dir:
        common.run_trainpipe(
            [*FAST, "run_name=prime"], warm_dir
        )  # builds the cache and mlflow.db once
        for repeat in range(args.repeats):
            add(
                "import",
                common.quiet(
                    lambda: common.timed_command(
                        [sys.executable, "-c", "import lightning"], warm_dir
                    )
                ),
            )
            add("help", common.quiet(lambda: common.timed_command([*tp, "--help"], warm_dir)))
            add(
                "cfg",
                common.quiet(
                    lambda: common.timed_command([*tp, "train", "--cfg", "job"], warm_dir)
                ),
            )
            for kind in ("cold", "warm"):
                summary, wall = common.quiet(lambda k=kind, w=warm_dir: start_once(k, w))
                add(f"first-{kind}", summary["first_step_unix"] - summary["launched_unix"])
                add(f"wall-{kind}", wall)
            print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)

    lightning = common.median(times["import"])
    rows = []
    measured = (
        ("help", "trainpipe --help", True),
        ("cfg", "trainpipe train --cfg job", True),
        ("first-cold", "launch → first train step, cold dir", False),
        ("first-warm", "launch → first train step, warm dir", False),
        ("wall-cold", "whole `train debug=fast`, cold dir", False),
        ("wall-warm", "whole `train debug=fast`, warm dir", False),
    )
    for key, label, has_goal in measured:  # only the CLI answers have a goal (< CLI_GOAL_S)
        value = common.median(times[key])
        rows.append(
            {
                "what": label,
                "trainpipe": f"{value:.2f} s (runs {common.spread(times[key])})",
                "baseline": f"{lightning:.2f} s (import lightning)",
                "ratio": f"{value / lightning:.2f}x",
                "goal": f"< {CLI_GOAL_S:.0f} s" if has_goal else "none set (info)",
                "status": common.verdict(value < CLI_GOAL_S) if has_goal else "-",
            }
        )
    print()
    common.print_table(rows)
    print(f"{common.repeats_note()}; {watch.report()}")


if __name__ == "__main__":
    main()
