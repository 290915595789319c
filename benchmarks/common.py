"""Helpers shared by the benchmark scripts: environment, temp dirs, trainpipe runs, plain loops, tables.

Every benchmark measures trainpipe and its baseline in the same process run, interleaved, and
reports medians: the machines these run on are shared and noisy.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# re-exported: the scripts use everything through `common`
from noise import CpuWatch, add_threads_arg, apply_threads, quiet, repeats_note, unreliable

from trainpipe.console import quiet_environment

OFFLINE_ENV = {
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
os.environ.update(OFFLINE_ENV)
# what `trainpipe` sets before importing the libraries: no dataset-preparation bars in the output
# of benchmarks that prepare data in this process
quiet_environment()

# the same optimizer settings as configs/model/mlp.yaml
LR, WEIGHT_DECAY = 0.002, 0.0001


def bench_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: offline, no inherited tracking URI or trainpipe paths."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "TRAINPIPE_"))
    }
    env.update(OFFLINE_ENV)
    env.update(extra)
    return env


@contextlib.contextmanager
def workdir(prefix: str = "trainpipe-bench-") -> Iterator[Path]:
    """A fresh temp dir (outputs/, mlflow.db and .trainpipe_cache/ land there), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def trainpipe_command() -> list[str]:
    """`trainpipe` as a user runs it: the console script next to this interpreter."""
    script = Path(sys.executable).parent / "trainpipe"
    return [str(script)] if script.exists() else [sys.executable, "-m", "trainpipe"]


def _run_in_pty(command: list[str], cwd: Path, timeout: float) -> tuple[int, str]:
    """Run with stdout/stderr on a pseudo-terminal, as in a user's shell (the progress bar renders)."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=bench_env(COLUMNS="100", LINES="40"),
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    with contextlib.suppress(OSError):  # EIO once the child closes the terminal
        while time.monotonic() < deadline:
            data = os.read(leader, 65536)
            if not data:
                break
            chunks.append(data)
    os.close(leader)
    try:
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    return code, b"".join(chunks)[-3000:].decode(errors="replace")


def run_trainpipe(
    args: Sequence[str], cwd: Path, tty: bool = False, timeout: float = 300
) -> tuple[dict[str, Any], float]:
    """Run `trainpipe train ARGS` in `cwd` with the ThroughputMonitor writing JSON.

    `tty=True` runs it on a pseudo-terminal like an interactive shell (stdout is a pipe otherwise).
    Each call gets its own run name (so its own output dir) unless ARGS set one.
    Returns the monitor's summary and the process's wall time (launch to exit)."""
    out = cwd / f"throughput-{time.monotonic_ns()}.json"
    command = [*trainpipe_command(), "train", *args, f"callbacks.throughput.output_path={out}"]
    if not any(
        a.startswith("run_name=") for a in args
    ):  # a new output dir (and MLflow run) per call
        command.append(f"run_name=bench-{time.time_ns()}")
    launched, started = time.time(), time.perf_counter()
    if tty:
        code, tail = _run_in_pty(command, cwd, timeout)
    else:
        result = subprocess.run(
            command, cwd=cwd, env=bench_env(), capture_output=True, text=True, timeout=timeout
        )
        code, tail = result.returncode, result.stderr[-3000:]
    wall = time.perf_counter() - started
    if code != 0 or not out.exists():
        sys.exit(f"benchmark run failed: {' '.join(command)}\n{tail}")
    summary = json.loads(out.read_text())
    summary["launched_unix"] = launched
    return summary, wall


def timed_command(command: Sequence[str], cwd: Path, timeout: float = 300) -> float:
    """Wall seconds of one command (it must succeed)."""
    started = time.perf_counter()
    result = subprocess.run(
        list(command), cwd=cwd, env=bench_env(), capture_output=True, text=True, timeout=timeout
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"benchmark command failed: {' '.join(command)}\n{result.stderr[-3000:]}")
    return wall


# -- data and the plain PyTorch baseline ----------------------------------------------------
def digits_train_split(cache_dir: Path) -> Any:
    """The prepared digits train split exactly as `trainpipe train` builds it (configs/data/digits.yaml)."""
    from trainpipe.config.compose import compose
    from trainpipe.config.validate import validate
    from trainpipe.data.tables import prepare_table

    conf = validate(compose("train", [f"paths.cache_dir={cache_dir}"]), "train")
    return prepare_table(conf["data"], "classes")


def tensors(prepared: Any) -> tuple[Any, Any]:
    """The train split as in-memory (float32 [N, F], int64 [N]) tensors."""
    import torch

    rows = prepared.splits["train"].with_format("numpy")[:]
    return torch.from_numpy(rows["features"]), torch.from_numpy(rows["target"]).long()


def tensor_loader(x: Any, y: Any, batch_size: int, seed: int = 42) -> Any:
    """The textbook baseline: DataLoader(TensorDataset(x, y), shuffle=True)."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    return DataLoader(
        TensorDataset(x, y),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )


def plain_loop(
    prepared: Any, loader: Any, hidden_sizes: Sequence[int], epochs: int, warmup_steps: int = 5
) -> list[float]:
    """Train trainpipe's net (FeatureModel over an MLP) with a hand-written loop; steady-state step seconds.

    Timed exactly like `ThroughputMonitor`: end of one batch to end of the next (loading included),
    leaving out the first `warmup_steps` batches and the first batch of every epoch."""
    import torch
    import torch.nn.functional as F

    from trainpipe.tasks import get_task
    from trainpipe.tasks.tabular.model import FeatureModel

    torch.manual_seed(42)
    net = {
        "_target_": "trainpipe.tasks.tabular.nets.MLP",
        "hidden_sizes": list(hidden_sizes),
        "dropout": 0.1,
    }
    model = FeatureModel({**get_task("classification").data_spec(prepared), "net": net})
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    model.train()
    steps: list[float] = []
    seen = 0
    for _ in range(epochs):
        previous = None
        for features, labels in loader:
            loss = F.cross_entropy(model(features), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            now = time.perf_counter()
            seen += 1
            if previous is not None and seen > warmup_steps:
                steps.append(now - previous)
            previous = now
        scheduler.step()
    return steps


# -- statistics and reporting ----------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    return f"{min(values):.3g}–{max(values):.3g}" if len(values) > 1 else f"{values[0]:.3g}"


def machine() -> str:
    import torch

    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), python {platform.python_version()}, "
        f"load average {load}"
    )


def print_header(title: str, how: str) -> None:
    print(f"\n== {title} ==")
    print(f"machine: {machine()}")
    print(how)


def print_table(rows: list[dict[str, str]]) -> None:
    """rows: dicts with keys what, trainpipe, baseline, ratio, goal, status."""
    keys = ["what", "trainpipe", "baseline", "ratio", "goal", "status"]
    widths = {k: max(len(k), *(len(r.get(k, "")) for r in rows)) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys))
    print("  ".join("-" * widths[k] for k in keys))
    for row in rows:
        print("  ".join(row.get(k, "").ljust(widths[k]) for k in keys))


def verdict(met: bool, rounds: Sequence[float] = (), goal: float | None = None) -> str:
    """MET / NOT MET, with the reasons to doubt it: per-round values on both sides of the goal,
    or measurements kept although other processes were busy."""
    text = "MET" if met else "NOT MET"
    notes = []
    if goal is not None and len(rounds) > 1 and min(rounds) <= goal <= max(rounds):
        notes.append("rounds straddle the goal")
    if unreliable():
        notes.append("busy machine: unreliable")
    return f"{text} ({'; '.join(notes)})" if notes else text


__all__ = ["CpuWatch", "add_threads_arg", "apply_threads", "quiet", "repeats_note"]
