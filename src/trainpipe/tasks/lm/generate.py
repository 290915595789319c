"""Autoregressive sampling from a GPT with a key/value cache.

The prompt is run through the model once (prefill) and its keys/values kept; after that each
new token costs one position. GPT-2's positions are learned and absolute, so once the context
outgrows seq_len every token's position shifts and no cached key stays valid: from then on we
recompute the last seq_len tokens each step, exactly like the uncached path (nanoGPT's cropping).
"""

from __future__ import annotations

import torch
from torch import Tensor

from trainpipe.tasks.lm.gpt import GPT


class LayerKV:
    """One layer's keys and values, preallocated for the whole context."""

    def __init__(self, k: Tensor, v: Tensor) -> None:
        self.k, self.v = k, v  # [B, H, seq_len, head_dim]

    def update(self, k: Tensor, v: Tensor, start_pos: int) -> tuple[Tensor, Tensor]:
        """Write k, v [B, H, T, hd] at start_pos.. ; return the keys/values of 0..start_pos+T."""
        end = start_pos + k.size(2)
        self.k[:, :, start_pos:end] = k
        self.v[:, :, start_pos:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


def make_kv_cache(model: GPT, batch: int = 1) -> list[LayerKV]:
    """An empty cache for `batch` sequences: one slot per layer, in one preallocated buffer."""
    c = model.config
    weight = model.wte.weight
    shape = (c.n_layer, 2, batch, c.n_head, c.seq_len, c.d_model // c.n_head)
    buf = torch.zeros(shape, dtype=weight.dtype, device=weight.device)
    return [LayerKV(buf[i, 0], buf[i, 1]) for i in range(c.n_layer)]


def _sample(
    logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator
) -> int:
    """One token id from a 1-D row of logits over the real vocabulary."""
    if temperature == 0:
        return int(logits.argmax())
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.numel():
        kth_largest = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def generate(
    model: GPT,
    prompt: list[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    use_cache: bool = True,
    stop_token: int | None = None,
) -> list[int]:
    """Continue `prompt` by up to `max_new_tokens` ids and return only the new ones.

    temperature 0 is greedy decoding; `top_k` keeps the k most likely tokens; `seed` makes
    sampling reproducible (a private generator, the global RNG is left alone). Generation stops
    early after emitting `stop_token` (which is included in the result). Ids in the padded tail
    of the vocabulary (>= config.vocab_size) are never produced.
    """
    if not prompt:
        raise ValueError("generate needs a non-empty prompt (e.g. just the end-of-text token)")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    vocab, seq_len = model.config.vocab_size, model.config.seq_len
    device = model.wte.weight.device
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()  # fresh entropy, still not the global RNG
    else:
        generator.manual_seed(seed)

    tokens = list(prompt)
    cache: list[LayerKV] | None = None
    cached = 0  # positions whose keys/values are in the cache
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for _ in range(max_new_tokens):
                if use_cache and len(tokens) <= seq_len:
                    if cache is None:
                        cache = make_kv_cache(model)
                    new = torch.tensor([tokens[cached:]], device=device)
                    logits = model(new, cache, start_pos=cached)
                    cached = len(tokens)
                else:
                    logits = model(torch.tensor([tokens[-seq_len:]], device=device))
                token = _sample(logits[0, -1, :vocab], temperature, top_k, generator)
                tokens.append(token)
                if token == stop_token:
                    break
    finally:
        model.train(was_training)
    return tokens[len(prompt) :]
