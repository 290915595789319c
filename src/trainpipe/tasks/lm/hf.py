"""Hugging Face GPT-2 interop: export our GPT as a `GPT2LMHeadModel` directory and load one back.

Neither direction needs `transformers`: a HF GPT-2 checkpoint is a config.json plus a
model.safetensors whose keys are ours with a `transformer.` prefix, except that HF's Conv1D
layers (c_attn, c_proj, c_fc) store their weight as [in, out], the transpose of nn.Linear's.
Only safetensors is read, never pickled pytorch_model.bin files.

The exported tokenizer (`export_tokenizer`) is a `tokenizer.json` that
`transformers.AutoTokenizer` loads for every kind, byte-level included, and it puts the
end-of-text token in front of what it encodes, as trainpipe's generator does (every training
document starts with it): `model(**tokenizer(prompt, return_tensors="pt"))` then gives the logits
trainpipe's `generate` computes. `config.json`'s `bos_token_id` names the same token.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from trainpipe.data.tokenizers import CONFIG_FILE, EOT_TOKEN, TOKENIZER_FILE, TextTokenizer
from trainpipe.runtime.atomic import atomic_path, atomic_write_text
from trainpipe.tasks.lm.gpt import GPT, GPTConfig

_SIZES = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# HF names the same tanh-approximate GELU two ways
_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")
# config.json settings that change GPT-2's maths; we only implement the defaults
_FIXED = {
    "layer_norm_epsilon": 1e-5,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "tie_word_embeddings": True,
    "add_cross_attention": False,
}
# buffers (causal masks) that older GPT-2 checkpoints saved next to the weights
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def _template(config: GPTConfig) -> dict[str, Tensor]:
    """Our state dict (meta tensors, no memory) for the bias=True model HF's layout needs."""
    with torch.device("meta"):
        state = GPT(replace(config, bias=True)).state_dict()
    del state["lm_head.weight"]  # tied to wte; HF omits it too
    return state


def export_hf(
    model: GPT,
    out_dir: Path,
    tokenizer_files: Iterable[Path] = (),
    *,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
) -> Path:
    """Write `model` as a HF GPT-2 checkpoint (config.json + model.safetensors) into out_dir.

    The padded vocabulary rows are dropped (HF's vocab_size is the real one), a bias=False
    model gets zero biases (HF GPT-2 always has them), and `tokenizer_files` are copied in.
    Returns out_dir.
    """
    c = model.config
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ours, dtype = model.state_dict(), model.wte.weight.dtype
    tensors = {}
    for key, like in _template(c).items():
        t = ours[key].detach() if key in ours else torch.zeros(like.shape, dtype=dtype)
        if key == "wte.weight":
            t = t[: c.vocab_size]
        if key.endswith(_CONV1D):
            t = t.t()
        tensors[f"transformer.{key}"] = t.to("cpu").contiguous()
    hf_config = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": c.vocab_size,
        "n_positions": c.seq_len,
        "n_ctx": c.seq_len,
        "n_embd": c.d_model,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "initializer_range": 0.02,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "dtype": str(dtype).removeprefix("torch."),
        **_FIXED,
    }
    # weights first: a config.json only ever appears next to a complete model.safetensors
    with atomic_path(out_dir / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    for src in tokenizer_files:
        with atomic_path(out_dir / Path(src).name) as tmp:
            shutil.copyfile(src, tmp)
    atomic_write_text(out_dir / "config.json", json.dumps(hf_config, indent=2) + "\n")
    return out_dir


def export_tokenizer(tokenizer: TextTokenizer, directory: Path) -> list[Path]:
    """`tokenizer` as tokenizer.json + tokenizer_config.json for transformers (and trainpipe's
    `load_tokenizer`): the same ids, with the end-of-text token prepended on encoding."""
    import tokenizers as hf

    if tokenizer.kind == "bytes":
        exported, eot = _byte_level_tokenizer(), EOT_TOKEN
    else:  # a JsonTokenizer: a copy, so the model's own tokenizer is left as it is
        exported, eot = hf.Tokenizer.from_str(tokenizer.tokenizer.to_str()), tokenizer.eot_token
    # trainpipe encodes without special tokens (tokenizers.py), transformers with them: the
    # template makes transformers' ids the ones trainpipe's generator feeds the model
    template = hf.processors.TemplateProcessing(
        single=f"{eot} $A", pair=f"{eot} $A {eot} $B", special_tokens=[(eot, tokenizer.eot_id)]
    )
    before = exported.post_processor
    exported.post_processor = (
        template if before is None else hf.processors.Sequence([before, template])
    )
    directory.mkdir(parents=True, exist_ok=True)
    exported.save(str(directory / TOKENIZER_FILE))
    config = {
        "trainpipe_tokenizer": tokenizer.kind,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": eot,
        "eos_token": eot,
    }
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return [directory / TOKENIZER_FILE, directory / CONFIG_FILE]


def _byte_level_tokenizer() -> object:
    """trainpipe's byte tokenizer (UTF-8 byte b → id b, end-of-text 256) as a `tokenizers`
    Tokenizer: GPT-2's byte-level pre-tokenizer maps each byte to one character, and a BPE
    without merges maps that character to the byte's value."""
    import tokenizers as hf

    characters = _bytes_to_unicode()
    vocab = {characters[b]: b for b in range(256)}
    tokenizer = hf.Tokenizer(hf.models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = hf.decoders.ByteLevel()
    tokenizer.add_special_tokens([EOT_TOKEN])  # id 256, the next free one
    return tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character table (the one the ByteLevel pre-tokenizer uses)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _read_config(model_dir: Path) -> dict:
    if not model_dir.is_dir():
        raise ValueError(f"HF model directory {model_dir} does not exist")
    path = model_dir / "config.json"
    if not path.is_file():
        raise ValueError(f"{path} is missing: not a Hugging Face model directory")
    cfg = json.loads(path.read_text())
    if cfg.get("model_type") != "gpt2":
        raise ValueError(f"{path}: model_type is {cfg.get('model_type')!r}, only 'gpt2' loads")
    absent = [k for k in _SIZES if k not in cfg]
    if absent:
        raise ValueError(f"{path}: missing keys {absent}")
    act = cfg.get("activation_function", "gelu_new")
    if act not in _ACTIVATIONS:
        raise ValueError(f"{path}: activation_function {act!r} unsupported (need {_ACTIVATIONS})")
    for key, default in _FIXED.items():
        if cfg.get(key, default) != default:
            raise ValueError(f"{path}: {key}={cfg[key]!r} is unsupported (only {default!r})")
    if cfg.get("n_inner") not in (None, 4 * cfg["n_embd"]):
        raise ValueError(f"{path}: n_inner={cfg['n_inner']} unsupported (only 4·n_embd)")
    return cfg


def _read_tensors(model_dir: Path) -> dict[str, Tensor]:
    path = model_dir / "model.safetensors"
    index = model_dir / "model.safetensors.index.json"
    if path.is_file():
        return load_file(path)
    if index.is_file():  # a sharded checkpoint (big models)
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(model_dir / shard).items()}
    hint = ""
    if (model_dir / "pytorch_model.bin").exists():
        hint = (
            ": only pytorch_model.bin (a pickle) is there, which is never loaded; "
            "re-save it with save_pretrained(..., safe_serialization=True)"
        )
    raise ValueError(f"{path} is missing; a safetensors checkpoint is needed{hint}")


def load_hf(model_dir: Path, *, dropout: float = 0.0) -> GPT:
    """Build our GPT from a HF GPT-2 directory (config.json + model.safetensors).

    seq_len = n_positions, bias=True. `dropout` is for fine-tuning (HF's three pdrop values do
    not map onto our one rate). The padded vocabulary rows are zeros: they are never a target
    nor sampled (see gpt.py), so any value would do and zeros keep loading deterministic.
    """
    model_dir = Path(model_dir)
    cfg = _read_config(model_dir)
    config = GPTConfig(
        vocab_size=cfg["vocab_size"],
        seq_len=cfg["n_positions"],
        n_layer=cfg["n_layer"],
        n_head=cfg["n_head"],
        d_model=cfg["n_embd"],
        dropout=dropout,
    )
    theirs = {
        k.removeprefix("transformer."): v
        for k, v in _read_tensors(model_dir).items()
        if not k.endswith(_IGNORED_SUFFIXES) and k != "lm_head.weight"  # tied to wte
    }
    template = _template(config)
    missing = sorted(template.keys() - theirs.keys())
    extra = sorted(theirs.keys() - template.keys())
    if missing or extra:
        raise ValueError(
            f"{model_dir / 'model.safetensors'} does not fit config.json: "
            f"missing tensors {missing[:5]}, unexpected tensors {extra[:5]}"
        )
    state = {}
    for key, like in template.items():
        t = theirs[key].t() if key.endswith(_CONV1D) else theirs[key]
        if key == "wte.weight":
            pad = like.shape[0] - t.shape[0]
            t = torch.cat([t, t.new_zeros(pad, t.shape[1])]) if pad > 0 else t
        if t.shape != like.shape:
            raise ValueError(
                f"tensor {key!r} has shape {tuple(t.shape)}, config needs {tuple(like.shape)}"
            )
        state[key] = t
    state["lm_head.weight"] = state["wte.weight"]
    model = GPT(config)
    model.load_state_dict(state)
    return model
