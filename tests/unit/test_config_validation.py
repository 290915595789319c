"""The composed config is checked before anything runs: one clear message naming the key, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from trainpipe.config.compose import compose
from trainpipe.config.validate import validate
from trainpipe.errors import ConfigError


def test_default_config_is_valid() -> None:
    conf = validate(compose("train", []), "train")
    assert conf["model"]["name"] == "mlp"
    assert conf["data"]["source"] == "digits"
    assert conf["experiment_name"] == "digits_mlp"
    assert conf["registry"]["model_name"] == "digits_mlp"


def test_every_experiment_and_group_option_composes() -> None:
    for overrides in (
        ["experiment=digits_cnn"],
        ["model=cnn"],
        ["trainer=cpu"],
        ["logger=none"],
        ["debug=fast"],
        ["debug=overfit"],
        ["debug=profiler"],
        ["data=csv", "data.path=x.csv", "data.target=y"],
        ["data=parquet", "data.path=x.parquet", "data.target=y"],
        ["data=json", "data.path=x.jsonl", "data.target=y"],
        ["data=hub", "data.name=owner/set", "data.target=y"],
    ):
        validate(compose("train", overrides), "train")


def test_command_line_group_choice_beats_the_experiment() -> None:
    conf = validate(compose("train", ["model=cnn"]), "train")
    assert conf["model"]["net"]["_target_"].endswith("CNN")


def test_run_identity_is_deterministic_and_tracks_the_training_config() -> None:
    first = compose("train", [])["hydra"]["run"]["dir"]
    again = compose("train", [])["hydra"]["run"]["dir"]
    other = compose("train", ["model.optimizer.lr=0.01"])["hydra"]["run"]["dir"]
    moved_cache = compose("train", ["paths.cache_dir=/elsewhere"])["hydra"]["run"]["dir"]
    named = compose("train", ["run_name=exp42"])["hydra"]["run"]["dir"]
    assert first == again == moved_cache
    assert first != other
    assert named.endswith("/exp42")


@pytest.mark.parametrize(
    ("overrides", "key", "shown"),
    [
        (["model.optimizer.lr=0"], "model.optimizer.lr", "0"),
        (["model.optimizer.lr=-1e-3"], "model.optimizer.lr", "-0.001"),
        (["data.batch_size=0"], "data.batch_size", "0"),
        (["trainer.max_epochs=0"], "trainer.max_epochs", "0"),
        (["data.val_fraction=1.5"], "data.val_fraction", "1.5"),
        (["data.val_fraction=0"], "data.val_fraction", "0"),
        (["data.batch_size=big"], "data.batch_size", "big"),
        (["trainer.max_epochs=true"], "trainer.max_epochs", "True"),
        (["+trainer.max_epoch=3"], "trainer.max_epoch", "max_epochs"),
        (["+data.batchsize=3"], "data.batchsize", "batch_size"),
        (["+model.net.width=3"], "model.net.width", "MLP"),
        (["+model.optimizer.momentum=0.9"], "model.optimizer.momentum", "AdamW"),
        (["+callbacks.early_stopping.patiense=3"], "callbacks.early_stopping.patiense", "patience"),
        (["data.source=ftp"], "data.source", "ftp"),
        (["trainer.precision=8"], "trainer.precision", "8"),
        (["data.val_fraction=0.5", "data.test_fraction=0.5"], "data.val_fraction", "0.5"),
        (["data=csv", "data.target=y"], "data.path", "required"),
        (["model=cnn", "data=csv", "data.path=x.csv", "data.target=y"], "data.image_shape", "CNN"),
        (["data.features=[label]"], "data.features", "label"),
    ],
)
def test_bad_values_name_the_key(overrides: list[str], key: str, shown: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate(compose("train", overrides), "train")
    message = str(caught.value)
    assert key in message
    assert shown in message


def test_unknown_group_option_and_unknown_key_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="model/transformer"):
        compose("train", ["model=transformer"])
    with pytest.raises(ConfigError, match="trainer.max_epoch"):
        compose("train", ["trainer.max_epoch=3"])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "model.optimizer.lr=0"], "model.optimizer.lr"),
        (["train", "+trainer.max_epoch=3"], "trainer.max_epoch"),
        (["train", "model=transformer"], "model"),
        (["train", "data=csv", "data.target=y"], "data.path"),
        (["train", "data.batch_size=-4"], "data.batch_size"),
        (["eval"], "model_uri"),
    ],
)
def test_cli_config_error_exits_2_and_leaves_nothing(
    workdir: Path, args: list[str], needle: str
) -> None:
    result = run_cli(args, cwd=workdir)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sorted(p.name for p in workdir.iterdir()) == []  # no outputs/, no mlflow.db, no cache


def test_unknown_command_exits_2(workdir: Path) -> None:
    result = run_cli(["trian"], cwd=workdir)
    assert result.returncode == 2
    assert "unknown command 'trian'" in result.stderr
