"""`trainpipe estimate <train overrides>`: the train config, on paper, without torch or a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainpipe.commands.estimate import describe, main


def test_gpt2_124m_has_124_million_parameters() -> None:
    text = describe(["experiment=gpt2_124m", "perf.device=NVIDIA H100 80GB HBM3"])
    assert "124 M parameters" in text
    assert "vocab 50257 (50304 padded)" in text
    assert "16 seq/device × 1 accumulation" in text and "bf16-mixed" in text
    assert "steps              1000" in text  # trainer.max_steps of the experiment


def test_layout_comes_from_the_trainer_and_budget_from_perf() -> None:
    text = describe(
        [
            "experiment=gpt2_124m",
            "trainer=fsdp2",
            "trainer.devices=4",
            "trainer.accumulate_grad_batches=2",
            "model.activation_checkpointing=true",
            "perf.token_budget=1000000",
            "perf.gpu_hour_usd=2",
            "perf.peak_tflops=100",
        ]
    )
    assert "4 device(s)" in text and "FSDP (sharded)" in text
    assert "activation checkpointing on" in text and "× 2 accumulation" in text
    assert "steps              8 " in text  # ceil(1e6 / (16·1024·2·4))
    assert "40% of 100 TFLOP/s (given)" in text and "cost" in text


def test_pretrained_tokenizer_size_is_read_from_its_tokenizer_json(tmp_path: Path) -> None:
    tokenizer = tmp_path / "tok"
    tokenizer.mkdir()
    vocab = {f"t{i}": i for i in range(10)}
    added = [{"id": 12, "content": "<|endoftext|>"}]
    (tokenizer / "tokenizer.json").write_text(
        json.dumps({"model": {"type": "BPE", "vocab": vocab}, "added_tokens": added})
    )
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello\n")
    text = describe(
        [
            "data=text",
            f"data.path={corpus}",
            "model=gpt",
            "trainer.max_steps=10",
            "tokenizer=pretrained",
            f"tokenizer.path={tokenizer}",
        ]
    )
    assert "vocab 13 (64 padded)" in text


def test_bytes_tokenizer_has_257_ids_and_a_non_gpt_model_is_a_config_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert "vocab 257 (320 padded)" in describe(["experiment=stdlib_gpt"])
    assert main(["model=mlp"]) == 2
    assert "estimate covers GPT models" in capsys.readouterr().err


def test_an_unknown_gpu_names_itself_the_peak_key_and_the_known_devices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["experiment=gpt2_124m", "perf.device=Radeon 9000"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "perf.device: no peak TFLOP/s known for 'Radeon 9000'" in line
    assert "perf.peak_tflops=" in line and "H100 SXM" in line and "A100" in line
    # a given peak needs no table row
    given = ["experiment=gpt2_124m", "perf.device=Radeon 9000", "perf.peak_tflops=100"]
    assert "40% of 100 TFLOP/s (given)" in describe(given)


def test_memory_beyond_the_device_is_a_warning_not_an_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    a100 = ["experiment=gpt2_124m", "perf.device=NVIDIA A100-SXM4-80GB"]
    assert main([*a100, "data.batch_size=256"]) == 0
    out = capsys.readouterr().out
    warning = next(line for line in out.splitlines() if line.startswith("warning:"))
    assert "exceeds the 80 GiB of NVIDIA A100-SXM4-80GB" in warning and "data.batch_size" in warning
    assert "warning:" not in describe([*a100, "data.batch_size=4"])
