"""Real tables (categories, gaps, dates): quality against scikit-learn's HistGradientBoosting on the
same split, the cost of the encoding per epoch, and what the cache saves on the second run.

1. Quality. `trainpipe train` (the default MLP, the CLI as a user runs it) and
   HistGradientBoostingClassifier / Regressor (categorical_features="from_dtype", default
   settings) on the very same train/test split (trainpipe's, seeded, read back in this process):
   - penguins (palmerpenguins' bundled CSV: 2 string columns, 11 rows with gaps; species), test
     accuracy; goal: within 2 points of the classifier;
   - a generated regression table (categories with gaps, a date, numbers with gaps), test r2;
     goal: within 0.03 of the regressor.
2. Encoding overhead. Time per training epoch (loader + forward + backward + AdamW step of the
   default MLP, in this process) on a generated mixed table (3 categorical, 3 numeric with gaps,
   a date, a boolean) against an all-numeric table of the same rows × columns, and against one
   whose net is as wide as the mixed table's (its encoded numbers + embeddings: what is left is
   the encoding's own cost in the step); alternating rounds, medians. Goal: ≤ 1.10×.
3. Cache. `prepare_table` on the mixed table's CSV twice in a fresh cache: second / first.
   Goal: ≤ 0.2×.

    python benchmarks/tables.py [--rounds 7] [--rows 20000] [--batch-size 64] [--epochs 60]
                                [--skip-quality]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import common
import numpy as np
import pandas as pd

SEED = 42


def mixed(rows: int, seed: int = 0, target: str = "classes") -> pd.DataFrame:
    """Categories (one with 20 values), numbers and a date, each with ~8 % gaps, a boolean; the
    target depends on all kinds."""
    rng = np.random.default_rng(seed)
    shop = rng.choice([f"s{i}" for i in range(20)], size=rows)
    region = rng.choice(["north", "south", "east"], size=rows)
    channel = rng.choice(["web", "store"], size=rows)
    x = rng.normal(size=(rows, 3))
    month = rng.integers(1, 13, size=rows)
    score = (
        x[:, 0]
        + 0.5 * x[:, 1] * (region == "north")
        + np.array([int(s[1:]) % 5 for s in shop]) * 0.4
        + np.sin(2 * np.pi * month / 12)
        + (channel == "web") * 0.7
    )
    frame = pd.DataFrame(
        {
            "shop": shop.astype(object),
            "region": region.astype(object),
            "channel": channel.astype(object),
            "x0": x[:, 0],
            "x1": x[:, 1],
            "x2": x[:, 2],
            "day": [
                f"2024-{m:02d}-{d:02d}"
                for m, d in zip(month, rng.integers(1, 28, rows), strict=True)
            ],
            "member": rng.random(rows) < 0.3,
        }
    )
    if target == "classes":
        frame["y"] = np.digitize(score, np.quantile(score, [0.33, 0.66])).astype(str)
    else:
        frame["y"] = score + rng.normal(scale=0.3, size=rows)
    gaps = rng.random((rows, 4)) < 0.08
    for column, gap in zip(["region", "x0", "x1", "day"], gaps.T, strict=True):
        frame[column] = frame[column].astype(object)
        frame.loc[gap, column] = None
    return frame


def numeric_twin(frame: pd.DataFrame, columns: int | None = None) -> pd.DataFrame:
    """The same rows × columns (or `columns`), every feature a plain number (the baselines)."""
    rng = np.random.default_rng(1)
    out = pd.DataFrame(rng.normal(size=(len(frame), columns or len(frame.columns) - 1)))
    out.columns = [f"f{i}" for i in out.columns]
    out["y"] = frame["y"].to_numpy()
    return out


def data_conf(path: Path, cache: Path, target: str, test_fraction: float = 0.1) -> dict[str, Any]:
    return {
        "kind": "table", "source": "csv", "name": path.stem, "path": str(path), "target": target,
        "features": None, "image_shape": None, "val_fraction": 0.1, "test_fraction": test_fraction,
        "seed": SEED, "cache_dir": str(cache), "batch_size": 64, "num_workers": 0,
        "categorical": [], "numeric": [], "drop": [], "class_weights": "none",
        "drop_missing_target": True, "storage_options": {},
    }  # fmt: skip


# -- 1. quality ---------------------------------------------------------------------------------
def trainpipe_metric(
    wd: Path, csv: Path, target: str, metric: str, epochs: int, test_fraction: float
) -> float:
    import mlflow

    args = [
        "data=csv", f"data.path={csv}", f"data.target={target}", f"seed={SEED}",
        f"data.test_fraction={test_fraction}", f"trainer.max_epochs={epochs}",
        "trainer.enable_progress_bar=false", f"experiment_name={csv.stem}",
    ]  # fmt: skip
    common.run_trainpipe(args, wd)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{wd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(csv.stem)
    (run,) = client.search_runs([experiment.experiment_id])
    return run.data.metrics[metric]


def sklearn_frame(frame: pd.DataFrame, plan: dict[str, Any]) -> pd.DataFrame:
    """The features as HistGradientBoosting takes them: categories as pandas categories, dates as
    day number + month + day of week, numbers as they are (gaps are NaN: it handles them)."""
    from trainpipe.data.columns import day_numbers

    out = pd.DataFrame(index=frame.index)
    for column in plan["numeric"]:
        out[column["name"]] = pd.to_numeric(frame[column["name"]])
    for column in plan["categorical"]:
        keys = frame[column["name"]].map(str, na_action="ignore")
        out[column["name"]] = pd.Categorical(keys, categories=column["categories"])
    for column in plan["dates"]:
        days = day_numbers(frame[column["name"]], column["name"])
        when = pd.to_datetime(days, unit="D")
        out[column["name"]] = days
        out[column["name"] + ".month"] = when.month
        out[column["name"] + ".dow"] = when.day_of_week
    return out


def sklearn_metric(prepared: Any, kind: str) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import accuracy_score, r2_score

    train = prepared.raw_splits["train"].to_pandas()
    test = prepared.raw_splits["test"].to_pandas()
    model_class = (
        HistGradientBoostingClassifier if kind == "classes" else HistGradientBoostingRegressor
    )
    model = model_class(categorical_features="from_dtype", random_state=0)
    model.fit(sklearn_frame(train, prepared.plan), train["__target__"])
    predicted = model.predict(sklearn_frame(test, prepared.plan))
    score = accuracy_score if kind == "classes" else r2_score
    return float(score(test["__target__"], predicted))


def quality(wd: Path, epochs: int) -> list[dict[str, str]]:
    import palmerpenguins

    from trainpipe.data.tables import prepare_table

    penguins = wd / "penguins.csv"
    palmerpenguins.load_penguins().to_csv(penguins, index=False)
    regression = wd / "sales.csv"
    mixed(3000, seed=3, target="values").to_csv(regression, index=False)
    rows = []
    for csv, target, kind, metric, goal in (
        (penguins, "species", "classes", "test/acc", 0.02),
        (regression, "y", "values", "test/r2", 0.03),
    ):
        test_fraction = 0.3 if kind == "classes" else 0.2  # penguins has 344 rows
        ours = trainpipe_metric(wd, csv, target, metric, epochs, test_fraction)
        prepared = prepare_table(
            data_conf(csv, wd / ".trainpipe_cache", target, test_fraction), kind
        )
        theirs = sklearn_metric(prepared, kind)
        model = "HistGradientBoosting" + ("Classifier" if kind == "classes" else "Regressor")
        rows.append(
            {
                "what": f"{csv.stem}: {metric} ({prepared.split_sizes()['test']} test rows)",
                "trainpipe": f"{ours:.4f}",
                "baseline": f"{theirs:.4f} ({model})",
                "ratio": f"{ours - theirs:+.4f}",
                "goal": f">= -{goal}",
                "status": common.verdict(ours - theirs >= -goal),
            }
        )
    return rows


# -- 2. encoding overhead per epoch --------------------------------------------------------------
def epoch_seconds(prepared: Any, module: Any, optimizer: Any, loader: Any) -> float:
    started = time.perf_counter()
    for features, target in loader:
        optimizer.zero_grad(set_to_none=True)
        # the training step's work (the module's own step logs, which needs a Trainer)
        module.head.loss(module.model, module.model(features), target).backward()
        optimizer.step()
    return time.perf_counter() - started


def overhead(
    wd: Path, rows: int, rounds: int, batch_size: int
) -> tuple[list[dict[str, str]], Path]:
    import logging

    import torch

    from trainpipe.config.compose import compose
    from trainpipe.data.loader import batch_loader
    from trainpipe.tasks import get_task

    logging.getLogger("lightning").setLevel(logging.ERROR)
    frame = mixed(rows)
    mixed_csv = wd / "mixed.csv"
    frame.to_csv(mixed_csv, index=False)
    task = get_task("classification")
    model_cfg = compose("train", []).model
    setups = {}

    def setup(name: str, csv: Path) -> Any:
        from trainpipe.data.tables import prepare_table

        prepared = prepare_table(data_conf(csv, wd / "bench-cache", "y"), "classes")
        module = task.build_module(model_cfg, task.data_spec(prepared))
        optimizer = torch.optim.AdamW(module.parameters(), lr=common.LR)
        loader = batch_loader(prepared.splits["train"], batch_size, shuffle=True, seed=0)
        epoch_seconds(prepared, module, optimizer, loader)  # warm-up
        setups[name] = (prepared, module, optimizer, loader)

    setup("mixed", mixed_csv)
    net_inputs = setups["mixed"][1].spec["input_shape"][0]
    for name, columns in (("numeric", None), ("wide", net_inputs)):
        numeric_twin(frame, columns).to_csv(wd / f"{name}.csv", index=False)
        setup(name, wd / f"{name}.csv")
    times: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(rounds):
        for name in setups:
            times[name].append(epoch_seconds(*setups[name]))
    encoded = setups["mixed"][0].splits["train"].features["features"].length
    result = []
    for baseline, label in (
        ("numeric", "vs all numeric, same table shape (8 columns: 8 net inputs)"),
        ("wide", f"vs all numeric, same net width ({net_inputs} net inputs)"),
    ):
        ratios = [m / n for m, n in zip(times["mixed"], times[baseline], strict=True)]
        ratio = common.median(ratios)
        result.append(
            {
                "what": f"epoch, {rows} rows x 8 columns, batch {batch_size}, default MLP, {label}",
                "trainpipe": f"{common.median(times['mixed']) * 1000:.0f} ms (mixed: {encoded} encoded -> {net_inputs} net inputs)",
                "baseline": f"{common.median(times[baseline]) * 1000:.0f} ms",
                "ratio": f"{ratio:.3f} (rounds {common.spread(ratios)})",
                "goal": "<= 1.10",
                "status": common.verdict(ratio <= 1.10, ratios, 1.10),
            }
        )
    return result, mixed_csv


# -- 3. cache --------------------------------------------------------------------------------------
def cache(wd: Path, csv: Path) -> list[dict[str, str]]:
    from trainpipe.data.tables import prepare_table

    conf = data_conf(csv, wd / "fresh-cache", "y")
    first = prepare_table(conf, "classes")
    second = prepare_table(conf, "classes")
    assert second.cache_reused and not first.cache_reused
    ratio = second.seconds / first.seconds
    return [
        {
            "what": f"prepare {csv.name} ({sum(first.split_sizes().values())} rows): second run / first",
            "trainpipe": f"{second.seconds:.3f} s (cache reused)",
            "baseline": f"{first.seconds:.3f} s (cache built)",
            "ratio": f"{ratio:.3f}",
            "goal": "<= 0.20",
            "status": common.verdict(ratio <= 0.20),
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating epoch rounds (median)")
    parser.add_argument("--rows", type=int, default=20000, help="rows of the overhead table")
    parser.add_argument(
        "--batch-size", type=int, default=64, help="overhead batch size (data.batch_size's default)"
    )
    parser.add_argument(
        "--epochs", type=int, default=60, help="trainpipe epochs in the quality runs"
    )
    parser.add_argument(
        "--skip-quality", action="store_true", help="only the overhead and cache measurements"
    )
    common.add_threads_arg(parser)
    args = parser.parse_args()
    common.apply_threads(args.threads)
    watch = common.CpuWatch()
    common.print_header(
        "real tables: quality vs HistGradientBoosting, encoding overhead, cache",
        f"quality: trainpipe train (default MLP, {args.epochs} epochs) vs scikit-learn defaults on one "
        f"split; overhead: {args.rounds} alternating epoch rounds, medians",
    )
    with common.workdir() as wd:
        rows = [] if args.skip_quality else quality(wd, args.epochs)
        more, mixed_csv = overhead(wd, args.rows, args.rounds, args.batch_size)
        rows += more + cache(wd, mixed_csv)
    common.print_table(rows)
    import torch

    print(f"torch threads: {torch.get_num_threads()}; {watch.report()}")


if __name__ == "__main__":
    main()
