"""The language-modelling task behind the task interface: a GPT module built from the data spec
learns, its package and its checkpoint rebuild the same generator, and the predictor takes what
users hand it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from trainpipe.callbacks.final_validation import FinalValidation
from trainpipe.config.compose import compose
from trainpipe.config.targets import instantiate_checked
from trainpipe.config.validate import resolve, validate
from trainpipe.errors import ConfigError
from trainpipe.tasks import check_config, get_task

TINY_GPT = ["model.n_layer=1", "model.n_head=2", "model.d_model=32", "model.seq_len=16"]


def lm_plan(tmp_path: Path, *overrides: str):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(300)))
    cfg = compose(
        "train",
        [
            "data=text",
            f"data.path={corpus}",
            "data.sample_by=paragraph",
            "model=gpt",
            f"paths.cache_dir={tmp_path}/cache",
            *TINY_GPT,
            *overrides,
        ],
    )
    conf = resolve(cfg)
    task = get_task("lm")
    return task, cfg, conf, task.prepare(conf)


def test_a_gpt_module_built_from_the_spec_learns_and_reports_bits_per_byte(tmp_path: Path) -> None:
    task, cfg, conf, prepared = lm_plan(tmp_path)
    spec = task.data_spec(prepared)
    assert spec["vocab_size"] == 257 and spec["eot_id"] == 256
    module = task.build_module(cfg.model, spec)
    assert module.model.config.seq_len == 16 and module.flops_per_token > 0
    loader = task.datamodule(prepared, conf["data"]).make_loader("train", True, 0, 1)
    inputs, targets = next(iter(loader))
    assert module.tokens_in_batch((inputs, targets)) == inputs.numel()
    optimizer = torch.optim.AdamW(module.parameters(), lr=3e-3)
    first = module.model.loss(inputs, targets).item()
    for _ in range(40):
        optimizer.zero_grad()
        module.model.loss(inputs, targets).backward()
        optimizer.step()
    assert module.model.loss(inputs, targets).item() < 0.6 * first
    metrics = task.evaluate(
        task.load_predictor(
            {
                "trainpipe_model": module.spec,
                "state_dict": {f"model.{k}": v for k, v in module.model.state_dict().items()},
            }
        ),
        prepared,
        8,
        "cpu",
    )
    assert set(metrics) == {"test/loss", "test/ppl", "test/bpb"}
    assert metrics["test/bpb"] == pytest.approx(
        metrics["test/loss"] / 0.6931471805599453 / prepared.bytes_per_token["test"]
    )


def test_the_package_rebuilds_the_same_generator_and_takes_prompts_any_way(tmp_path: Path) -> None:
    task, cfg, conf, prepared = lm_plan(tmp_path)
    module = task.build_module(cfg.model, task.data_spec(prepared))
    package = task.write_package(module, prepared, tmp_path / "model")
    assert sorted(package.artifacts) == ["spec", "tokenizer", "weights"]
    loaded = task.load_predictor(package.directory)
    greedy = {"max_new_tokens": 12, "temperature": 0}
    expected = module_continuation = loaded.predict(["def f"], greedy)
    direct = task.load_predictor(
        {
            "trainpipe_model": module.spec,
            "state_dict": {f"model.{k}": v for k, v in module.model.state_dict().items()},
        }
    )
    assert list(direct.predict("def f", greedy)) == list(module_continuation)
    assert list(loaded.predict(pd.DataFrame({"prompt": ["def f"]}), greedy)) == list(expected)
    sampled = loaded.predict(["x", "y"], {"max_new_tokens": 5, "seed": 3})
    assert len(sampled) == 2 and sampled.name == "continuation"
    with pytest.raises(ValueError, match="`prompt` column"):
        loaded.predict(pd.DataFrame({"text": ["x"]}))
    with pytest.raises(ValueError, match="unknown params"):
        loaded.predict(["x"], {"max_tokens": 5})


def test_text_data_needs_a_language_model_and_d_model_must_split_into_heads(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world\n")
    # text data picks a GPT unless the command line names another model
    assert compose("train", ["data=text", f"data.path={corpus}"]).model.name == "gpt"
    with pytest.raises(ConfigError, match="text data trains a language model: use model=gpt"):
        check_config(
            validate(compose("train", ["data=text", f"data.path={corpus}", "model=mlp"]), "train")
        )
    with pytest.raises(ConfigError, match="model.d_model: must be a multiple of model.n_head"):
        check_config(
            validate(
                compose(
                    "train",
                    [
                        "data=text",
                        f"data.path={corpus}",
                        "model=gpt",
                        "model.n_head=5",
                        "trainer.max_steps=9",
                    ],
                ),
                "train",
            )
        )
    with pytest.raises(ConfigError, match="model.scheduler.total_steps: must be the run's length"):
        validate(
            compose(
                "train",
                ["data=text", f"data.path={corpus}", "model=gpt", "model.scheduler.total_steps=0"],
            ),
            "train",
        )


class ValidationSteps(Callback):
    """The global steps at which validation ran."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self.steps.append(trainer.global_step)


def fit_tiny(
    tmp_path: Path, trainer_args: dict[str, Any], *overrides: str
) -> tuple[Any, list[int]]:
    """Fit a tiny GPT on a tiny corpus with the default early stopping; (trainer, val steps)."""
    task, cfg, conf, prepared = lm_plan(
        tmp_path, "optimized_metric=val/loss", "optimized_mode=min", *overrides
    )
    validate(cfg, "train")
    module = task.build_module(cfg.model, task.data_spec(prepared))
    validations = ValidationSteps()
    stopping = instantiate_checked(cfg.callbacks.early_stopping, "callbacks.early_stopping")
    trainer = lightning.Trainer(
        callbacks=[FinalValidation(), stopping, validations],
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_args,
    )
    trainer.fit(module, datamodule=task.datamodule(prepared, conf["data"]))
    return trainer, validations.steps


def test_a_run_validates_by_steps_and_always_validates_its_final_weights(tmp_path: Path) -> None:
    task = get_task("lm")
    trainer = {"max_steps": 60, "val_check_interval": None, "accumulate_grad_batches": 2}
    assert task.trainer_defaults({"trainer": trainer}) == {
        "trainer.val_check_interval": 12,  # a tenth of the run, in batches (2 per step)
        "trainer.check_val_every_n_epoch": None,  # counted across epochs
    }
    # max_steps ends inside the first epoch, between two validation points: no epoch-end
    # validation, yet the final weights are validated and early stopping never lacks its metric
    _, steps = fit_tiny(
        tmp_path,
        {"max_steps": 5, "val_check_interval": 3, "check_val_every_n_epoch": None},
        "trainer.max_steps=5",
    )
    assert steps == [3, 5]


def test_without_max_steps_the_schedule_spans_max_epochs_times_the_epoch(tmp_path: Path) -> None:
    trainer, steps = fit_tiny(
        tmp_path,
        {"max_epochs": 2, "limit_train_batches": 3},
        "trainer.max_epochs=2",
        "model.scheduler.warmup_steps=1",
    )
    assert steps == [3, 6]  # every epoch end
    (config,) = trainer.lr_scheduler_configs
    factor = config.scheduler.lr_lambdas[0]
    assert factor(6) == pytest.approx(0.1) and factor(5) > 0.1  # the floor at the run's last step
