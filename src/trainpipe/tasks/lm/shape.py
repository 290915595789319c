"""A GPT's shape for `trainpipe estimate` (perf/estimate.py), read from the config alone: no
torch, no data, no tokenizer training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainpipe.errors import ConfigError

BYTE_VOCAB = 257  # 256 bytes + end-of-text (data/tokenizers.py)


def model_shape(conf: dict[str, Any], notes: list[str]) -> Any:
    from trainpipe.perf.estimate import ModelShape

    model = conf["model"]
    shape = {k: model[k] for k in ("n_layer", "n_head", "d_model", "seq_len")}
    vocab = vocab_size(conf["tokenizer"], notes)
    if model.get("init_from"):
        hf = json.loads((Path(model["init_from"]).expanduser() / "config.json").read_text())
        shape.update(n_layer=hf["n_layer"], n_head=hf["n_head"], d_model=hf["n_embd"])
        vocab = max(vocab, int(hf["vocab_size"]))
        notes.append(f"architecture from {model['init_from']}/config.json")
    return ModelShape(**shape, vocab_size=vocab, bias=bool(model.get("bias", True)))


def vocab_size(tokenizer: dict[str, Any], notes: list[str]) -> int:
    """The tokenizer's id count, read without training or loading anything."""
    kind = tokenizer.get("kind")
    if kind == "bytes":
        return BYTE_VOCAB
    if kind == "bpe":
        notes.append(
            f"vocabulary: tokenizer.vocab_size={tokenizer['vocab_size']} (a small corpus may yield "
            "fewer BPE tokens; the trained size is what the model gets)"
        )
        return int(tokenizer["vocab_size"])
    path = Path(str(tokenizer.get("path"))).expanduser() / "tokenizer.json"
    if not path.is_file():
        raise ConfigError("tokenizer.path", f"no tokenizer.json in {tokenizer.get('path')!r}")
    data = json.loads(path.read_text())
    vocab = data["model"].get("vocab") or {}
    ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab)))
    ids += [token["id"] for token in data.get("added_tokens", [])]
    return max(ids) + 1
