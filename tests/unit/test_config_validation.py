"""The composed config is checked before anything runs: one clear message naming the key.

The schema is the YAML tree itself (config/schema.py): these tests also keep the tree honest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trainpipe.config.compose import compose
from trainpipe.config.locate import config_dir
from trainpipe.config.schema import RULE, load_schema
from trainpipe.config.targets import check_arguments
from trainpipe.config.validate import resolve, validate
from trainpipe.errors import ConfigError
from trainpipe.tasks import check_config


def test_default_config_is_valid_and_named_after_its_data() -> None:
    conf = validate(compose("train", []), "train")
    assert conf["model"]["name"] == "mlp"
    assert conf["data"]["source"] == "digits"
    assert conf["task"] == "auto"
    assert conf["experiment_name"] == "digits" == conf["registry"]["model_name"]
    assert conf["run_name"].startswith("digits-mlp-")


def test_a_file_names_the_experiment_and_an_experiment_config_names_it_explicitly(
    tmp_path: Path,
) -> None:
    wine = tmp_path / "wine.csv"
    wine.write_text("a,target\n1,2\n")
    conf = resolve(compose("train", ["data=csv", f"data.path={wine}", "data.target=target"]))
    assert conf["experiment_name"] == "wine" and conf["run_name"].startswith("wine-mlp-")
    assert resolve(compose("train", ["experiment=digits_cnn"]))["experiment_name"] == "digits_cnn"


@pytest.mark.parametrize(
    "overrides",
    [
        ["experiment=digits_cnn"],
        ["experiment=digits_mlp"],
        ["model=cnn"],
        ["trainer=cpu"],
        ["logger=none"],
        ["debug=fast"],
        ["debug=overfit"],
        ["debug=profiler"],
        ["~model/scheduler"],
        ["data=csv", "data.path=x.csv", "data.target=y"],
        ["data=parquet", "data.path=x.parquet", "data.target=y"],
        ["data=json", "data.path=x.jsonl", "data.target=y"],
        ["data=hub", "data.name=owner/set", "data.target=y"],
    ],
)
def test_every_experiment_and_group_option_composes(overrides: list[str]) -> None:
    validate(compose("train", overrides), "train")


def test_debug_runs_never_register_a_model() -> None:
    for name in ("fast", "overfit", "profiler"):
        assert (
            validate(compose("train", [f"debug={name}"]), "train")["registry"]["register"] is False
        )


def test_command_line_group_choice_beats_the_experiment() -> None:
    conf = validate(compose("train", ["experiment=digits_mlp", "model=cnn"]), "train")
    assert conf["model"]["net"]["_target_"].endswith("CNN")


def test_run_name_is_deterministic_and_tracks_the_training_config_and_data(tmp_path: Path) -> None:
    def run_dir(*overrides: str) -> str:
        return compose("train", list(overrides))["hydra"]["run"]["dir"]

    first, again = run_dir(), run_dir()
    assert (
        first == again == run_dir("paths.cache_dir=/elsewhere")
    )  # where caches go is not identity
    assert first != run_dir("model.optimizer.lr=0.01")
    assert first != run_dir("logger=none")  # a tracked and an untracked job are not the same job
    assert run_dir("run_name=exp42").endswith("/exp42")
    rows = tmp_path / "rows.csv"
    rows.write_text("a,target\n1,2\n")
    before = run_dir("data=csv", f"data.path={rows}", "data.target=target")
    rows.write_text("a,target\n1,3\n")  # same name, new content: a new job
    assert run_dir("data=csv", f"data.path={rows}", "data.target=target") != before


@pytest.mark.parametrize(
    ("overrides", "key", "shown"),
    [
        (["model.optimizer.lr=0"], "model.optimizer.lr", "a number > 0, got 0"),
        (["model.optimizer.lr=-1e-3"], "model.optimizer.lr", "-0.001"),
        (["data.batch_size=0"], "data.batch_size", "an int >= 1, got 0"),
        (["trainer.max_epochs=0"], "trainer.max_epochs", "0"),
        (["data.val_fraction=1.5"], "data.val_fraction", "a number > 0 and < 1, got 1.5"),
        (["data.val_fraction=0"], "data.val_fraction", "0"),
        (["data.batch_size=big"], "data.batch_size", "big"),
        (["trainer.max_epochs=true"], "trainer.max_epochs", "True"),
        (["+trainer.max_epoch=3"], "trainer.max_epoch", "did you mean `trainer.max_epochs`"),
        (["+data.batchsize=3"], "data.batchsize", "did you mean `data.batch_size`"),
        (["+model.net.width=3"], "model.net.width", "MLP"),
        (["+callbacks.early_stopping.patiense=3"], "callbacks.early_stopping.patiense", "patience"),
        (["data.source=ftp"], "data.source", "ftp"),
        (["trainer.precision=8"], "trainer.precision", "8"),
        (["task=vision"], "task", "vision"),
        (["data.val_fraction=0.5", "data.test_fraction=0.5"], "data.val_fraction", "0.5"),
        (["data=csv", "data.target=y"], "data.path", "required"),
        (["model=cnn", "data=csv", "data.path=x.csv", "data.target=y"], "data.image_shape", "CNN"),
        (["trainer=fsdp2"], "trainer", "trainer=fsdp2 shards GPT models"),
        (
            ["experiment=stdlib_gpt", "trainer.gradient_clip_val=1.0"],
            "trainer.gradient_clip_val",
            "model.grad_clip",
        ),
        (["data.features=[label]"], "data.features", "label"),
        (["data.categorical=[label]"], "data.categorical", "target column 'label'"),
        (["data.class_weights=sometimes"], "data.class_weights", "one of auto, none"),
        (["data=sql", "data.target=y", "data.table=t"], "data.uri", "required"),
        (["data=sql", "data.target=y", "data.uri=duckdb://"], "data.query", "exactly one of"),
        (
            ["data=sql", "data.target=y", "data.uri=duckdb://", "data.table=t", "data.query=x"],
            "data.query",
            "exactly one of",
        ),
    ],
)
def test_bad_values_name_the_key(overrides: list[str], key: str, shown: str) -> None:
    with pytest.raises(ConfigError) as caught:  # the schema's rules, then the task's own
        check_config(validate(compose("train", overrides), "train"))
    message = str(caught.value)
    assert key in message
    assert shown in message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["trainer.max_epoch=3"],
            "trainer.max_epoch: unknown key; did you mean `trainer.max_epochs`?",
        ),
        (["model=mpl"], "model: unknown option 'mpl'; did you mean `model=mlp`?"),
        (["model=transformer"], "model: unknown option 'transformer'"),
        (["model/optimizer=adamv"], "did you mean `model/optimizer=adamw`?"),
    ],
)
def test_hydra_composition_errors_are_explained(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        compose("train", overrides)
    assert message in str(caught.value)


def test_arguments_are_checked_against_the_real_signature_when_built() -> None:
    cfg = compose("train", ["+model.optimizer.momentum=0.9", "+model.optimizer.betas=[0.9,0.95]"])
    validate(cfg, "train")  # an open section: AdamW's own arguments are not copied into the schema
    with pytest.raises(ConfigError) as caught:
        check_arguments(cfg.model.optimizer, "model.optimizer")
    assert "model.optimizer.momentum: unknown argument for torch.optim.AdamW" in str(caught.value)
    typo = compose("train", ["+trainer.gradient_clip_algorithn=value"])
    with pytest.raises(ConfigError, match="did you mean `trainer.gradient_clip_algorithm`"):
        check_arguments(typo.trainer, "trainer")
    check_arguments(compose("train", ["+trainer.gradient_clip_algorithm=value"]).trainer, "trainer")


def test_every_key_has_one_rule_and_every_bracketed_comment_is_a_rule() -> None:
    explicit: dict[str, tuple] = {}
    for entry in ("train", "eval"):
        for key, rule in load_schema(entry).rules.items():
            if rule.explicit:
                shape = (rule.types, rule.nullable, rule.bounds, rule.choices, rule.open)
                assert explicit.setdefault(key, shape) == shape, f"{key}: two different rules"
    bracketed = [
        (path.name, number, line.strip())
        for path in config_dir().rglob("*.yaml")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if line.strip().startswith("#") and line.strip().endswith("]") and "[" in line
    ]
    assert len(bracketed) > 40  # the tree declares its rules this way
    not_rules = [
        f"{name}:{number}: {text}" for name, number, text in bracketed if not RULE.search(text)
    ]
    assert not_rules == []


def test_the_plan_keeps_the_one_fingerprint_its_run_name_hashes(workdir: Path) -> None:
    import hashlib

    from trainpipe.config.identity import config_fingerprint
    from trainpipe.plan import plan_train
    from trainpipe.run_log import fingerprint_of

    overrides = ["model.optimizer.lr=0.002"]
    plan = plan_train(compose("train", overrides))
    given = compose("train", overrides)  # `task: auto`, as the command gave it
    assert fingerprint_of(plan) == plan.fingerprint == config_fingerprint(given)
    blob = f"{plan.fingerprint}|{plan.prepared.digest}|tracked=True"
    assert plan.run_name.endswith("-" + hashlib.sha256(blob.encode()).hexdigest()[:8])
    assert plan_train(compose("train", ["paths.log_dir=elsewhere", *overrides])).fingerprint == (
        plan.fingerprint
    )  # where files go is not what is trained
    assert plan_train(compose("train", ["model.optimizer.lr=0.003"])).fingerprint != (
        plan.fingerprint
    )


def test_the_plan_is_the_one_read_only_config_later_steps_read(workdir: Path) -> None:
    from omegaconf import OmegaConf
    from omegaconf.errors import ReadonlyConfigError

    from trainpipe.plan import plan_train

    cfg = compose("train", [])
    as_given = OmegaConf.to_yaml(cfg)
    plan = plan_train(cfg)
    plan.adopt(workdir / "hydra-output")
    assert OmegaConf.to_yaml(cfg) == as_given  # Hydra's copy is never written back to
    assert cfg.task == "auto" and cfg.optimized_metric == "auto"
    config = plan.config
    assert config is not None and OmegaConf.is_readonly(config)
    with pytest.raises(ReadonlyConfigError):
        config.run_name = "other"
    # what the plan decided, resolved, is what the steps after it read
    assert config.task == plan.task.name != "auto"
    assert config.optimized_metric == plan.task.objective.metric
    assert config.run_name == plan.run_name
    assert config.paths.output_dir == str(workdir / "hydra-output") == str(plan.output_dir)
    assert OmegaConf.to_container(config) == plan.conf
