"""The language-modelling task behind the task interface: a GPT module built from the data spec
learns, its package and its checkpoint rebuild the same generator, and the predictor takes what
users hand it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from trainpipe.config.compose import compose
from trainpipe.config.validate import resolve
from trainpipe.errors import ConfigError
from trainpipe.tasks import get_task

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
    from trainpipe.config.validate import validate
    from trainpipe.tasks import check_config

    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world\n")
    with pytest.raises(ConfigError, match="text data trains a language model: use model=gpt"):
        check_config(validate(compose("train", ["data=text", f"data.path={corpus}"]), "train"))
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
    with pytest.raises(ConfigError, match="trainer.max_steps: model.scheduler warmup_cosine needs"):
        validate(compose("train", ["data=text", f"data.path={corpus}", "model=gpt"]), "train")
