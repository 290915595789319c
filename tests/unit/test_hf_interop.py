"""Hugging Face GPT-2 interop: same logits both ways, atomic export, clear errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from trainpipe.tasks.lm import hf
from trainpipe.tasks.lm.gpt import GPT, GPTConfig
from trainpipe.tasks.lm.hf import export_hf, load_hf

VOCAB, SEQ_LEN = 100, 16


def randomize(model: torch.nn.Module) -> None:
    """Every weight, bias and LayerNorm parameter random, so a wrong mapping of any one shows.

    LayerNorm gains stay near 1 so activations reach the range where GELU's tanh approximation
    differs from the exact GELU (a wrong activation must fail the comparison).
    """
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if "ln_" in name and name.endswith("weight") else 0.0, 0.2)


def tokens() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, SEQ_LEN), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


@pytest.fixture
def hf_dir(tmp_path: Path, transformers) -> Path:
    """A tiny random HF GPT-2 saved as safetensors (the layout save_pretrained writes)."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_head=2, n_embd=32, vocab_size=VOCAB, n_positions=SEQ_LEN, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config)
    randomize(model)
    model.save_pretrained(tmp_path / "hf", safe_serialization=True)
    return tmp_path / "hf"


def hf_logits(transformers, model_dir: Path) -> torch.Tensor:
    model = transformers.GPT2LMHeadModel.from_pretrained(
        model_dir, attn_implementation="eager", dtype=torch.float32
    ).eval()
    with torch.no_grad():
        return model(tokens()).logits


def our_logits(model: GPT) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(tokens())[..., : model.config.vocab_size]


def test_loaded_hf_model_gives_hf_logits(hf_dir: Path, transformers) -> None:
    model = load_hf(hf_dir)
    assert model.config == GPTConfig(
        vocab_size=VOCAB, seq_len=SEQ_LEN, n_layer=2, n_head=2, d_model=32
    )
    torch.testing.assert_close(
        our_logits(model), hf_logits(transformers, hf_dir), atol=1e-4, rtol=0
    )
    assert torch.all(model.wte.weight[VOCAB:] == 0)  # the documented padding


@pytest.mark.parametrize("bias", [True, False])
def test_exported_model_gives_our_logits_in_hf(tmp_path: Path, transformers, bias: bool) -> None:
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(vocab_size=VOCAB, seq_len=SEQ_LEN, n_layer=2, n_head=2, d_model=32, bias=bias)
    )
    randomize(model)
    out = export_hf(model, tmp_path / "export", eos_token_id=0)
    torch.testing.assert_close(hf_logits(transformers, out), our_logits(model), atol=1e-4, rtol=0)


def test_export_writes_a_complete_gpt2_directory(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text('{"fake": "tokenizer"}')
    model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=SEQ_LEN, n_layer=1, n_head=2, d_model=32))
    out = export_hf(model, tmp_path / "export", [tmp_path / "tokenizer.json"], eos_token_id=7)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]  # no temp files left behind
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["architectures"] == ["GPT2LMHeadModel"]
    assert (config["vocab_size"], config["n_positions"], config["eos_token_id"]) == (VOCAB, 16, 7)
    weights = load_file(out / "model.safetensors")
    assert weights["transformer.wte.weight"].shape == (VOCAB, 32)  # padded rows dropped
    assert weights["transformer.h.0.mlp.c_fc.weight"].shape == (32, 128)  # Conv1D: [in, out]
    assert (out / "tokenizer.json").read_text() == '{"fake": "tokenizer"}'
    # and it loads back into the same model
    torch.testing.assert_close(our_logits(load_hf(out)), our_logits(model))


def test_a_crash_while_exporting_keeps_the_previous_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=SEQ_LEN, n_layer=1, n_head=2, d_model=32))
    out = export_hf(model, tmp_path / "export")
    before = (out / "model.safetensors").read_bytes()

    def dies_half_way(tensors, filename, metadata=None) -> None:
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(hf, "save_file", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        export_hf(GPT(model.config), out)
    assert (out / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]


def test_original_gpt2_layout_loads(hf_dir: Path, transformers) -> None:
    # the checkpoints on the Hub (gpt2, gpt2-medium, ...) have no "transformer." prefix and
    # carry the attention-mask buffers
    weights = load_file(hf_dir / "model.safetensors")
    old = {k.removeprefix("transformer."): v for k, v in weights.items()}
    old["h.0.attn.bias"] = torch.ones(1, 1, SEQ_LEN, SEQ_LEN).tril()
    old["h.0.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(old, hf_dir / "model.safetensors", metadata={"format": "pt"})
    torch.testing.assert_close(
        our_logits(load_hf(hf_dir)), hf_logits(transformers, hf_dir), atol=1e-4, rtol=0
    )


def test_sharded_checkpoint_loads(hf_dir: Path, transformers, tmp_path: Path) -> None:
    model = transformers.GPT2LMHeadModel.from_pretrained(hf_dir)
    model.save_pretrained(tmp_path / "sharded", safe_serialization=True, max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    torch.testing.assert_close(
        our_logits(load_hf(tmp_path / "sharded")), our_logits(load_hf(hf_dir))
    )


def write_dir(path: Path, config: dict, weights: dict[str, torch.Tensor] | None = None) -> Path:
    """A model directory built from our own export, then edited to be broken."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    if weights is not None:
        save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    return path


@pytest.fixture
def good(tmp_path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=SEQ_LEN, n_layer=1, n_head=2, d_model=32))
    out = export_hf(model, tmp_path / "good")
    return json.loads((out / "config.json").read_text()), load_file(out / "model.safetensors")


def test_missing_files_are_named(tmp_path: Path, good) -> None:
    config, _ = good
    with pytest.raises(ValueError, match="does not exist"):
        load_hf(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.json"):
        load_hf(tmp_path / "empty")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_hf(write_dir(tmp_path / "no_weights", config))


def test_pickle_checkpoint_is_refused_with_a_hint(tmp_path: Path, good) -> None:
    config, weights = good
    model_dir = write_dir(tmp_path / "bin", config)
    torch.save(weights, model_dir / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"safetensors checkpoint is needed.*pytorch_model\.bin"):
        load_hf(model_dir)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"model_type": "llama"}, "model_type"),
        ({"activation_function": "relu"}, "activation_function"),
        ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon"),
        ({"n_inner": 64}, "n_inner"),
        ({"n_head": 3}, "n_head"),  # 32 is not divisible by 3: GPTConfig's own check
    ],
)
def test_unsupported_config_is_refused(tmp_path: Path, good, change: dict, words: str) -> None:
    config, weights = good
    with pytest.raises(ValueError, match=words):
        load_hf(write_dir(tmp_path / "bad", {**config, **change}, weights))


def test_missing_extra_or_misshapen_tensors_are_named(tmp_path: Path, good) -> None:
    config, weights = good
    missing = {k: v for k, v in weights.items() if k != "transformer.h.0.ln_2.bias"}
    with pytest.raises(ValueError, match=r"missing tensors \['h\.0\.ln_2\.bias'\]"):
        load_hf(write_dir(tmp_path / "missing", config, missing))
    extra = {**weights, "transformer.h.1.ln_1.weight": torch.ones(32)}
    with pytest.raises(ValueError, match=r"unexpected tensors \['h\.1\.ln_1\.weight'\]"):
        load_hf(write_dir(tmp_path / "extra", config, extra))
    wrong = {**weights, "transformer.wpe.weight": torch.zeros(8, 32)}
    with pytest.raises(ValueError, match="wpe.weight"):
        load_hf(write_dir(tmp_path / "wrong", config, wrong))


def bpe_tokenizer():
    from trainpipe.data.tokenizers import EOT_TOKEN, JsonTokenizer, train_bpe

    texts = ["the cat sat on the mat, naïve café 🙂"] * 20
    return JsonTokenizer(train_bpe(iter([texts]), 300), EOT_TOKEN, kind="bpe")


@pytest.mark.parametrize("kind", ["bytes", "bpe"])
def test_the_exported_tokenizer_loads_in_transformers_and_gives_our_generators_logits(
    tmp_path: Path, transformers, kind: str
) -> None:
    from trainpipe.data.tokenizers import ByteTokenizer, load_tokenizer
    from trainpipe.tasks.lm.hf import export_tokenizer

    tokenizer = ByteTokenizer() if kind == "bytes" else bpe_tokenizer()
    torch.manual_seed(0)
    model = GPT(GPTConfig(tokenizer.vocab_size, seq_len=64, n_layer=1, n_head=2, d_model=32))
    randomize(model)
    files = export_tokenizer(tokenizer, tmp_path / "tok")
    eot = tokenizer.eot_id
    out = export_hf(model, tmp_path / "export", files, bos_token_id=eot, eos_token_id=eot)
    prompt = "the cat, naïve 🙂"
    # what trainpipe's generator feeds the model (tasks/lm/predictor.py): end-of-text first
    ours = [eot, *tokenizer.encode_batch([prompt])[0]]
    theirs = transformers.AutoTokenizer.from_pretrained(out)
    encoded = theirs(prompt, return_tensors="pt")
    assert encoded.input_ids[0].tolist() == ours
    assert (
        theirs.bos_token_id == eot == json.loads((out / "config.json").read_text())["bos_token_id"]
    )
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(
        out, attn_implementation="eager", dtype=torch.float32
    ).eval()
    with torch.no_grad():
        expected = model.eval()(torch.tensor([ours]))[..., : tokenizer.vocab_size]
        torch.testing.assert_close(hf_model(**encoded).logits, expected, atol=1e-4, rtol=0)
    assert theirs.decode(encoded.input_ids[0], skip_special_tokens=True) == prompt
    # trainpipe reads the exported tokenizer back as the same kind, with the same ids
    again = load_tokenizer(out)
    assert again.kind == kind and again.encode_batch([prompt])[0] == ours[1:]
