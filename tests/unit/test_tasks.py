"""The tabular tasks behind the task interface: a module built from the data spec trains, its
checkpoint and its package rebuild the same model, and the predictor takes what users hand it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import write_csv
from trainpipe.config.compose import compose
from trainpipe.tasks import get_task


def plan_data(tmp_path: Path, task_name: str, *overrides: str):
    from trainpipe.config.validate import resolve

    task = get_task(task_name)
    conf = resolve(compose("train", [f"paths.cache_dir={tmp_path}/cache", *overrides]))
    prepared = task.prepare(conf)
    return task, conf, prepared


def regression_csv(path: Path, rows: int = 300) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 3))
    y = 50.0 + 20.0 * x[:, 0] - 7.5 * x[:, 1] + rng.normal(scale=0.5, size=rows)
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y}).to_csv(path, index=False)
    return path


def test_classification_module_is_built_from_the_spec_and_its_step_learns(tmp_path: Path) -> None:
    overrides = ["model.net.hidden_sizes=[32]", "model.optimizer.lr=0.01"]
    task, conf, prepared = plan_data(tmp_path, "classification", *overrides)
    spec = task.data_spec(prepared)
    module = task.build_module(compose("train", overrides).model, spec)
    assert module.model.feature_mean.shape == (64,) and spec["num_outputs"] == 10
    optimizer = module.configure_optimizers()["optimizer"]
    batch = next(iter(task.datamodule(prepared, conf["data"]).make_loader("train", True, 0, 1)))
    losses = []
    for _ in range(30):  # the same batch: the loss of a correctly wired model must fall
        optimizer.zero_grad()
        loss = module.training_step(batch, 0)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_regression_learns_on_the_standardised_target_and_predicts_on_its_scale(
    tmp_path: Path,
) -> None:
    path = regression_csv(tmp_path / "lin.csv")
    task, conf, prepared = plan_data(
        tmp_path, "regression", "data=csv", f"data.path={path}", "data.target=y"
    )
    spec = task.data_spec(prepared)
    assert spec["num_outputs"] == 1 and spec["target_mean"] == pytest.approx(50, abs=3)
    module = task.build_module(compose("train", ["model.net.hidden_sizes=[16]"]).model, spec)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    features, target = next(
        iter(task.datamodule(prepared, conf["data"]).make_loader("train", False, 0, 1))
    )
    for _ in range(300):
        optimizer.zero_grad()
        module.head.loss(module.model, module.model(features), target).backward()
        optimizer.step()
    package = task.write_package(module.eval(), prepared, tmp_path / "model")
    predictor = task.load_predictor(package.directory)
    predicted = predictor.predict(pd.DataFrame(features.numpy(), columns=["a", "b", "c"]))
    assert predicted.dtype == np.float64
    assert np.abs(predicted.to_numpy() - target.numpy()).mean() < 3.0  # target std is ~21
    metrics = task.evaluate(predictor, prepared, batch_size=64, device="cpu")
    assert set(metrics) == {"test/loss", "test/rmse", "test/mae", "test/r2"}
    assert metrics["test/r2"] > 0.9


def test_the_predictor_takes_names_arrays_lists_and_rows(tmp_path: Path) -> None:
    rows = write_csv(tmp_path / "rows.csv")
    task, conf, prepared = plan_data(
        tmp_path, "classification", "data=csv", f"data.path={rows}", "data.target=species"
    )
    module = task.build_module(compose("train", []).model, task.data_spec(prepared))
    predictor = task.load_predictor(
        task.write_package(module.eval(), prepared, tmp_path / "m").directory
    )
    frame = pd.read_csv(rows).drop(columns="species").head(8)
    expected = list(predictor.predict(frame))
    assert list(predictor.predict(frame[["d", "c", "b", "a"]])) == expected  # matched by name
    assert list(predictor.predict(frame.to_numpy(np.float32))) == expected
    assert list(predictor.predict(frame.to_numpy().tolist())) == expected
    assert list(predictor.predict(frame.to_numpy()[0])) == expected[:1]  # one 1-D row
    assert set(expected) <= {"kind0", "kind1", "kind2"}
    with pytest.raises(ValueError, match=r"missing feature column\(s\) \['c'\]"):
        predictor.predict(frame.drop(columns="c"))
    # a missing number is imputed with the training median, as training does: a row of NaNs is
    # the row of medians (not class 0), and None in a list reads as missing
    medians = {c["name"]: c["median"] for c in predictor.spec["columns"]["numeric"]}
    blank = pd.DataFrame([[np.nan] * 4], columns=list("abcd"))
    assert list(predictor.predict(blank)) == list(predictor.predict(pd.DataFrame([medians])))
    assert list(predictor.predict([[None, None, None, None]])) == list(predictor.predict(blank))
    holes = frame.copy()
    holes.loc[5, "d"] = np.inf
    with pytest.raises(ValueError, match=r"input column 'd' has 1 infinite value\(s\)"):
        predictor.predict(holes)
    words = frame.assign(c="tall")
    with pytest.raises(ValueError, match="input column 'c' must hold numbers, got 'tall'"):
        predictor.predict(words)
    with pytest.raises(ValueError, match="input column 'c' must hold numbers"):
        predictor.predict(words.to_numpy())
