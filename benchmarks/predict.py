"""Rows/s of `trainpipe predict` vs the loaded pyfunc's `predict` in a plain loop; peak memory at
two input sizes.

A small classifier (4 numeric features, 3 classes, the default MLP) is trained once with
`trainpipe train` and registered. Throughput: both score the same Parquet file of `--rows` rows
in this process, interleaved for `--rounds` rounds (medians): trainpipe through
`trainpipe.predict.batch.run_predict` (what the CLI runs after parsing: model load, chunked read,
part files, publish, `logger=none`), the baseline as a user would write it — load the registered
model with `mlflow.pyfunc.load_model`, `ParquetFile.iter_batches(chunk_rows)`, `predict` on each
chunk's DataFrame, a `ParquetWriter` for the labels. Both include loading the model. Memory: the
peak RSS of a whole `trainpipe predict` process (`os.wait4`) at `--rows` and 4× that; bounded
streaming keeps it flat.

    python benchmarks/predict.py [--rows 1000000] [--rounds 3] [--chunk-rows 100000] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import common

GOAL = 0.90  # trainpipe's rows/s over the plain loop's
MEMORY_GOAL = 1.25  # peak RSS at 4× the rows over the peak at 1×
FEATURES = ["a", "b", "c", "d"]


def train_model(directory: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    centers = rng.normal(scale=4.0, size=(3, 4))
    label = rng.integers(0, 3, size=600)
    x = centers[label] + rng.normal(size=(600, 4))
    lines = ["a,b,c,d,kind"] + [
        ",".join(f"{v:.4f}" for v in row) + f",k{c}" for row, c in zip(x, label, strict=True)
    ]
    (directory / "bench.csv").write_text("\n".join(lines) + "\n")
    command = [*common.trainpipe_command(), "train", "data=csv", "data.path=bench.csv"]
    command += ["data.target=kind", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"]
    subprocess.run(command, cwd=directory, env=common.bench_env(), check=True, capture_output=True)


def write_input(path: Path, rows: int) -> None:
    """`rows` rows of id + 4 features, in row groups of 100k rows (as a writer streaming them would)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    step = 100_000
    schema = pa.schema([("id", pa.int64()), *[(f, pa.float64()) for f in FEATURES]])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, step):
            n = min(step, rows - start)
            columns = {"id": np.arange(start, start + n)}
            columns.update({f: rng.normal(scale=4.0, size=n) for f in FEATURES})
            writer.write_table(pa.table(columns, schema=schema), row_group_size=step)


def trainpipe_rows_per_s(directory: Path, rows: int, chunk_rows: int) -> float:
    from trainpipe.predict.batch import request_of, run_predict

    output = directory / "tp.parquet"
    output.unlink(missing_ok=True)
    args = ["model_uri=models:/bench/1", "data.path=in.parquet", f"output={output}"]
    args += ["logger=none", f"chunk_rows={chunk_rows}", "progress_every_s=3600", "device=cpu"]
    started = time.perf_counter()
    run_predict(request_of(args))
    return rows / (time.perf_counter() - started)


def plain_rows_per_s(directory: Path, rows: int, chunk_rows: int) -> float:
    import mlflow
    import pyarrow as pa
    import pyarrow.parquet as pq

    output = directory / "plain.parquet"
    started = time.perf_counter()
    model = mlflow.pyfunc.load_model("models:/bench/1")
    writer = None
    for batch in pq.ParquetFile(directory / "in.parquet").iter_batches(batch_size=chunk_rows):
        labels = model.predict(batch.to_pandas())
        table = pa.table({"prediction": pa.array(labels.tolist())})
        writer = writer or pq.ParquetWriter(output, table.schema)
        writer.write_table(table)
    writer.close()
    return rows / (time.perf_counter() - started)


def peak_rss_mb(directory: Path, source: str, chunk_rows: int) -> float:
    """Peak RSS of one whole `trainpipe predict` process scoring `source`."""
    command = [*common.trainpipe_command(), "predict", "model_uri=models:/bench/1"]
    command += [
        f"data.path={source}",
        "output=mem.parquet",
        "logger=none",
        f"chunk_rows={chunk_rows}",
    ]
    (directory / "mem.parquet").unlink(missing_ok=True)
    env = common.bench_env(MLFLOW_TRACKING_URI=f"sqlite:///{directory / 'mlflow.db'}")
    process = subprocess.Popen(command, cwd=directory, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"trainpipe predict exited with {process.returncode}")
    return usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating repetitions (median)")
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    common.add_threads_arg(parser)
    args = parser.parse_args()
    common.apply_threads(args.threads)
    watch = common.CpuWatch()
    common.print_header(
        "batch inference: trainpipe predict vs a plain loop over the pyfunc",
        f"{args.rows:,} rows × 4 features (Parquet), chunks of {args.chunk_rows:,}, default MLP "
        f"classifier, labels out; {args.rounds} alternating rounds, medians",
    )
    import mlflow

    rows: list[dict[str, str]] = []
    with common.workdir() as wd:
        train_model(wd)
        os.chdir(wd)
        mlflow.set_tracking_uri(f"sqlite:///{wd / 'mlflow.db'}")
        write_input(wd / "in.parquet", args.rows)
        trainpipe_rows_per_s(wd, args.rows, args.chunk_rows)  # warm up: imports, page cache
        plain_rows_per_s(wd, args.rows, args.chunk_rows)
        rates: dict[str, list[float]] = {"trainpipe": [], "plain": []}
        for _ in range(args.rounds):
            rates["trainpipe"].append(trainpipe_rows_per_s(wd, args.rows, args.chunk_rows))
            rates["plain"].append(plain_rows_per_s(wd, args.rows, args.chunk_rows))
        ratios = [a / b for a, b in zip(rates["trainpipe"], rates["plain"], strict=True)]
        ratio = common.median(ratios)
        rows.append(
            {
                "what": f"rows/s, {args.rows:,} rows",
                "trainpipe": f"{common.median(rates['trainpipe']):,.0f} rows/s",
                "baseline": f"{common.median(rates['plain']):,.0f} rows/s (pyfunc loop)",
                "ratio": f"{ratio:.2f} (rounds {common.spread(ratios)})",
                "goal": f">= {GOAL:.2f}",
                "status": common.verdict(ratio >= GOAL, ratios, GOAL),
            }
        )
        write_input(wd / "big.parquet", 4 * args.rows)
        small = peak_rss_mb(wd, "in.parquet", args.chunk_rows)
        big = peak_rss_mb(wd, "big.parquet", args.chunk_rows)
        rows.append(
            {
                "what": f"peak RSS, {4 * args.rows:,} vs {args.rows:,} rows",
                "trainpipe": f"{big:,.0f} MB",
                "baseline": f"{small:,.0f} MB (1× rows)",
                "ratio": f"{big / small:.2f}",
                "goal": f"<= {MEMORY_GOAL:.2f}",
                "status": common.verdict(big / small <= MEMORY_GOAL),
            }
        )
        sizes = {p.name: p.stat().st_size / 1e6 for p in (wd / "in.parquet", wd / "big.parquet")}
    print()
    common.print_table(rows)
    print(f"input sizes: {', '.join(f'{k} {v:.0f} MB' for k, v in sizes.items())}")
    print(f"{common.repeats_note()}; {watch.report()}")


if __name__ == "__main__":
    main()
