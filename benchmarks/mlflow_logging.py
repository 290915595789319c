"""Cost of logging every training step to MLflow (sqlite store) through trainpipe's MLflowTracker.

Two otherwise identical `trainpipe train` jobs: `logger=mlflow trainer.log_every_n_steps=1` (a
fresh sqlite store in a temp dir, the default tracking URI) against `logger=none`. Step time is the
ThroughputMonitor's (batch end to batch end, warm-up excluded). The tracker writes metrics from a
background thread every `flush_interval_s`, so its cost arrives as occasional slow steps: the
verdict uses the MEAN step time (what the run's wall time pays); the median is shown as well, and
the CPU time per step (all threads, the writer's included), which other processes on a shared
machine barely move: the steadiest view of what the logging costs.
Both jobs run without the progress bar (it is the same in both and only adds noise) and alternate
for `--rounds` rounds; each number is the median over rounds.

    python benchmarks/mlflow_logging.py [--rounds 6] [--epochs 10] [--hidden 256,128] [--threads N]
"""

from __future__ import annotations

import argparse

import common

GOAL = 1.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=6, help="alternating repetitions (median taken)"
    )
    parser.add_argument("--epochs", type=int, default=10, help="epochs per job (23 steps each)")
    parser.add_argument(
        "--hidden", default="256,128", help="MLP hidden sizes (default: configs/model/mlp.yaml)"
    )
    common.add_threads_arg(parser)
    args = parser.parse_args()
    common.apply_threads(args.threads)
    watch = common.CpuWatch()
    common.print_header(
        "MLflow logging overhead: logger=mlflow, log_every_n_steps=1 vs logger=none",
        f"digits, MLP [{args.hidden}], batch 64, {args.epochs} epochs per job, {args.rounds} alternating rounds, no progress bar",
    )
    stats = ("mean", "median", "cpu")
    results = {logger: {stat: [] for stat in stats} for logger in ("mlflow", "none")}
    logged_steps: list[int] = []
    with common.workdir() as wd:
        common.digits_train_split(wd / "cache")
        for round_no in range(args.rounds):
            for logger in ("mlflow", "none"):
                run_args = [
                    f"logger={logger}",
                    "trainer.log_every_n_steps=1",
                    f"trainer.max_epochs={args.epochs}",
                    f"model.net.hidden_sizes=[{args.hidden}]",
                    "trainer.enable_progress_bar=false",
                    "callbacks.early_stopping.patience=1000",
                    "registry.register=false",
                    "test_after_fit=false",
                    f"paths.cache_dir={wd / 'cache'}",
                ]
                summary, _ = common.quiet(lambda a=run_args: common.run_trainpipe(a, wd))
                results[logger]["mean"].append(summary["step_time_ms_mean"])
                results[logger]["median"].append(summary["step_time_ms_median"])
                results[logger]["cpu"].append(summary["cpu_time_ms_mean"])
            print(f"round {round_no + 1}/{args.rounds} done", flush=True)
        logged_steps = train_loss_points(wd)

    labels = {
        "mean": "mean wall time per step",
        "median": "median wall time per step",
        "cpu": "CPU time per step (all threads)",
    }
    rows = []
    for stat in stats:
        ours, base = results["mlflow"][stat], results["none"][stat]
        ratios = [a / b for a, b in zip(ours, base, strict=True)]
        ratio = common.median(ratios)
        rows.append(
            {
                "what": labels[stat],
                "trainpipe": f"{common.median(ours):.3f} ms (logger=mlflow)",
                "baseline": f"{common.median(base):.3f} ms (logger=none)",
                "ratio": f"{ratio:.3f}x (rounds {common.spread(ratios)})",
                "goal": f"<= {GOAL:.2f}x" if stat == "mean" else "info",
                "status": common.verdict(ratio <= GOAL, ratios, GOAL) if stat == "mean" else "-",
            }
        )
    print()
    common.print_table(rows)
    for logger, values in results.items():
        rounds = ", ".join(
            f"{m:.2f}/{c:.2f}" for m, c in zip(values["mean"], values["cpu"], strict=True)
        )
        print(f"per round, mean wall/CPU ms per step, logger={logger}: {rounds}")
    expected = 23 * args.epochs
    print(
        f"train/loss points in the last MLflow run: {logged_steps[-1] if logged_steps else 'n/a'} (one per step: {expected})"
    )
    print(f"{common.repeats_note()}; {watch.report()}")


def train_loss_points(wd) -> list[int]:
    """How many `train/loss` points each MLflow run in `wd` holds (checks that every step was logged)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{wd / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, order_by=["attributes.start_time ASC"])
    return [len(client.get_metric_history(r.info.run_id, "train/loss")) for r in runs]


if __name__ == "__main__":
    main()
