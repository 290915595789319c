"""Tables as they come out of a company's systems: categories, gaps, dates, ids and imbalance are
handled inside the model, learned on the training split, and served the same from raw rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import mixed_table
from tests.unit.test_tasks import plan_data
from trainpipe.config.compose import compose


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A mixed table prepared (code declared categorical, class weights on), a few epochs of
    plain training steps, packaged and loaded back as the registered model is."""
    tmp = tmp_path_factory.mktemp("mixed")
    frame = mixed_table(rows=600)
    frame.loc[[3, 50, 51], "plan"] = None  # rows without a target: dropped and counted
    frame.to_csv(tmp / "customers.csv", index=False)
    overrides = ["model.net.hidden_sizes=[32]", "model.optimizer.lr=0.01"]
    task, conf, prepared = plan_data(
        tmp,
        "classification",
        "data=csv",
        f"data.path={tmp / 'customers.csv'}",
        "data.target=plan",
        "data.categorical=[code]",
        "data.class_weights=auto",
        *overrides,
    )
    module = task.build_module(compose("train", overrides).model, task.data_spec(prepared))
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    loader = task.datamodule(prepared, conf["data"]).make_loader("train", True, 0, 1)
    for epoch in range(40):
        loader.batch_sampler.set_epoch(epoch)
        for features, target in loader:
            optimizer.zero_grad()
            module.head.loss(module.model, module.model(features), target).backward()
            optimizer.step()
    package = task.write_package(module.eval(), prepared, tmp / "model")
    return task, prepared, task.load_predictor(package.directory), frame, tmp


def test_column_kinds_are_inferred_declared_and_learned_on_the_training_split(trained) -> None:
    task, prepared, predictor, frame, _ = trained
    plan = prepared.plan
    assert prepared.feature_names == ["island", "size", "active", "signup", "code"]
    assert [c["name"] for c in plan["numeric"]] == ["size"]
    assert [c["name"] for c in plan["categorical"]] == ["island", "active", "code"]
    assert [c["name"] for c in plan["dates"]] == ["signup"]
    assert plan["excluded"] == [
        {"name": "customer", "reason": "a different value in every row: an id"}
    ]
    categories = {c["name"]: c["categories"] for c in plan["categorical"]}
    assert categories == {
        "island": ["Biscoe", "Dream", "Torgersen"],
        "active": ["False", "True"],
        "code": ["0", "1", "2", "3"],
    }
    assert sum(prepared.split_sizes().values()) == len(frame) - 3  # no target: dropped
    # statistics of the training rows only, not of all rows
    train_rows = prepared.splits["train"].num_rows
    (size,) = plan["numeric"]
    assert size["indicator"] is True and size["median"] != pytest.approx(frame["size"].median())
    assert train_rows < len(frame)
    facts = task.describe_data(predictor.spec).facts
    assert "excluded customer (a different value in every row: an id)" in facts["columns"]
    # imbalance: weights are n / (classes · count) of the training rows
    counts = np.bincount(np.asarray(prepared.splits["train"]["target"]), minlength=3)
    expected = train_rows / (3 * counts)
    assert predictor.spec["class_weights"] == pytest.approx(expected.tolist())


def test_the_registered_model_takes_raw_rows_as_training_encoded_them(trained) -> None:
    task, prepared, predictor, frame, _ = trained
    metrics = task.evaluate(predictor, prepared, batch_size=64, device="cpu")
    assert metrics["test/acc"] >= 0.8
    assert {"test/f1.gold", "test/precision.basic", "test/recall.silver"} <= set(metrics)
    # the raw test rows, through the serving path, score what evaluation on the encoded split did
    raw_test = prepared.raw_splits["test"].to_pandas()
    predicted = predictor.predict(raw_test[prepared.feature_names])
    truth = [predictor.spec["class_values"][i] for i in raw_test["__target__"]]
    assert np.mean(predicted.to_numpy() == np.asarray(truth)) == pytest.approx(metrics["test/acc"])
    rows = frame.drop(columns=["plan", "customer"]).dropna().head(20)
    expected = list(predictor.predict(rows))
    as_datetimes = rows.assign(signup=pd.to_datetime(rows["signup"]))
    assert list(predictor.predict(as_datetimes)) == expected
    assert list(predictor.predict(rows.to_numpy().tolist())) == expected  # lists, in order
    odd = rows.assign(island="Atlantis", code=9)  # never seen in training: "unknown"
    assert len(predictor.predict(odd)) == 20
    blank = pd.DataFrame([[None] * 5], columns=prepared.feature_names)
    probabilities = predictor.predict(blank, params={"output": "probabilities"})
    assert probabilities.shape == (1, 3) and probabilities.to_numpy().sum() == pytest.approx(1)
    with pytest.raises(ValueError, match="column 'signup' holds dates, but 'soon' does not parse"):
        predictor.predict(rows.assign(signup="soon"))
    with pytest.raises(ValueError, match="input column 'size' must hold numbers, got 'big'"):
        predictor.predict(rows.assign(size="big"))


def test_evaluation_of_other_data_encodes_it_with_the_models_statistics(trained) -> None:
    task, prepared, predictor, _, tmp = trained
    other = mixed_table(rows=300, seed=5)
    other.loc[other.index[:40], "island"] = "Atlantis"  # a category the model never saw
    other.to_csv(tmp / "next_month.csv", index=False)
    *_, fresh = plan_data(
        tmp, "classification", "data=csv", f"data.path={tmp / 'next_month.csv'}",
        "data.target=plan", "data.categorical=[code]",
    )  # fmt: skip
    assert fresh.plan != prepared.plan  # its own categories and medians
    task.check_compatible(predictor, fresh)
    metrics = task.evaluate(predictor, fresh, batch_size=64, device="cpu")
    raw_test = fresh.raw_splits["test"].to_pandas()
    predicted = predictor.predict(raw_test[fresh.feature_names]).to_numpy()
    truth = np.asarray([predictor.spec["class_values"][i] for i in raw_test["__target__"]])
    assert metrics["test/acc"] == pytest.approx(np.mean(predicted == truth))


def test_the_package_is_json_and_safetensors(trained) -> None:
    *_, tmp = trained
    files = sorted(p.name for p in (tmp / "model").iterdir())
    assert "spec.json" in files and "model.safetensors" in files
    assert not any(name.endswith((".pkl", ".pickle", ".pt")) for name in files)
    example = pd.read_json(tmp / "model" / "input_example.json", orient="split")
    assert "island" in example.columns and "customer" not in example.columns


def test_the_summary_line_names_a_few_columns_of_each_kind_and_counts_the_rest() -> None:
    from trainpipe.data.columns import describe_plan

    plan = {
        "numeric": [{"name": f"pixel_{i}", "indicator": i == 0} for i in range(64)],
        "categorical": [{"name": "island", "categories": ["Biscoe", "Dream"]}],
        "dates": [],
        "excluded": [],
    }
    line = describe_plan(plan)
    assert line.startswith("numeric pixel_0 (+missing), pixel_1, ")
    assert "pixel_7 … (+56); categorical island (2)" in line and "pixel_8" not in line
