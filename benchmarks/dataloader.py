"""Samples/s of trainpipe's `batch_loader` vs DataLoader(TensorDataset(x, y), shuffle=True).

Both serve the prepared digits train split (1437 rows × 64 float32 features, int64 labels) in
this process: trainpipe's loader reads the `datasets` split exactly as `prepare()` returns it (an
Arrow table with an indices mapping, memory-mapped from the cache); the baseline holds the same
rows as two in-memory tensors. One measurement = whole epochs (a new iterator each, as in
training), repeated until it lasts >= 0.2 s; the loaders alternate for `--rounds` rounds and each
number is the median over rounds. An extra, informational row serves trainpipe's loader from the
split with its indices flattened into memory, to show what the indices mapping costs.

    python benchmarks/dataloader.py [--rounds 15] [--batch-sizes 64,256] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import common

GOAL = 0.80  # trainpipe's samples/s over TensorDataset's


def epochs_per_second(loader: Any, rows: int, min_seconds: float = 0.2) -> float:
    """Samples/s over whole epochs of `loader` (data only, nothing trained)."""
    epochs, started = 0, time.perf_counter()
    while True:
        for features, labels in loader:
            assert len(features) == len(labels)
        epochs += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return epochs * rows / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=15, help="alternating repetitions (median taken)"
    )
    parser.add_argument("--batch-sizes", default="64,256")
    common.add_threads_arg(parser)
    args = parser.parse_args()
    common.apply_threads(args.threads)
    batch_sizes = [int(v) for v in args.batch_sizes.split(",")]
    watch = common.CpuWatch()
    common.print_header(
        "data loading: trainpipe batch_loader vs DataLoader(TensorDataset)",
        f"digits train split, shuffle=True, num_workers=0, whole epochs; {args.rounds} alternating rounds, medians",
    )
    import torch

    from trainpipe.data.loader import batch_loader

    rows: list[dict[str, str]] = []
    with common.workdir() as wd:
        prepared = common.digits_train_split(wd / "cache")
        split = prepared.splits["train"]
        flat = split.flatten_indices(keep_in_memory=True)
        x, y = common.tensors(prepared)
        n = len(split)
        for batch in batch_sizes:
            loaders = {
                "trainpipe": batch_loader(split, batch, shuffle=True, seed=42),
                "flattened": batch_loader(flat, batch, shuffle=True, seed=42),
                "tensor": common.tensor_loader(x, y, batch),
            }
            for loader in loaders.values():  # warm up: first iterators, page cache, allocator
                epochs_per_second(loader, n, min_seconds=0.05)
            rates: dict[str, list[float]] = {name: [] for name in loaders}
            for _ in range(args.rounds):
                for name, loader in loaders.items():
                    rates[name].append(common.quiet(lambda lo=loader: epochs_per_second(lo, n)))
            base = rates["tensor"]
            for name, label in (
                ("trainpipe", "batch_loader (as trained)"),
                ("flattened", "batch_loader, indices flattened"),
            ):
                ratios = [a / b for a, b in zip(rates[name], base, strict=True)]
                ratio = common.median(ratios)
                goal_row = name == "trainpipe"
                rows.append(
                    {
                        "what": f"batch {batch}: {label}",
                        "trainpipe": f"{common.median(rates[name]):,.0f} samples/s ({common.median(rates[name]) / batch:,.0f} batches/s)",
                        "baseline": f"{common.median(base):,.0f} samples/s ({common.median(base) / batch:,.0f} batches/s)",
                        "ratio": f"{ratio:.2f} (rounds {common.spread(ratios)})",
                        "goal": f">= {GOAL:.2f}" if goal_row else "info",
                        "status": common.verdict(ratio >= GOAL, ratios, GOAL) if goal_row else "-",
                    }
                )
    print()
    common.print_table(rows)
    print(f"torch threads: {torch.get_num_threads()}; {common.repeats_note()}; {watch.report()}")


if __name__ == "__main__":
    main()
