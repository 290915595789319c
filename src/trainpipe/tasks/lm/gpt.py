"""GPT-2-architecture causal language model in plain torch.nn (no Lightning, MLflow or Hydra).

Module and parameter names follow Hugging Face's GPT-2 (`wte`, `wpe`, `h.{i}.ln_1`,
`h.{i}.attn.c_attn`, ...) so that `hf.py` maps a state dict by adding a `transformer.` prefix
and transposing the Conv1D weights, nothing more.

The embedding/logit matrix has `padded_vocab_size` rows (the real vocabulary rounded up to a
multiple of 64, which keeps the largest matmul on fast tensor-core shapes). The padded tail is
not part of the model's distribution: `loss` and `generate` only ever look at the first
`vocab_size` logits, so those rows get no gradient and their values never matter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


@dataclass
class GPTConfig:
    """Shape of a GPT-2 model. `vocab_size` is the tokenizer's real size."""

    vocab_size: int
    seq_len: int  # context length = number of learned positions
    n_layer: int
    n_head: int
    d_model: int
    dropout: float = 0.0
    bias: bool = True  # in Linear and LayerNorm; GPT-2 has them, dropping them is a bit faster
    activation_checkpointing: bool = False  # recompute each block in backward to save memory

    def __post_init__(self) -> None:
        for key in ("vocab_size", "seq_len", "n_layer", "n_head", "d_model"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"GPTConfig.{key} must be a positive integer, got {value!r}")
        if self.d_model % self.n_head != 0:
            raise ValueError(
                f"GPTConfig.d_model ({self.d_model}) must be divisible by n_head ({self.n_head})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding / columns of the logits: vocab_size rounded up to 64."""
        return -(-self.vocab_size // 64) * 64


class LayerCache(Protocol):
    """One layer's slot in a KV cache (see generate.make_kv_cache)."""

    def update(self, k: Tensor, v: Tensor, start_pos: int) -> tuple[Tensor, Tensor]:
        """Store k, v [B, H, T, hd] at positions start_pos.. and return keys/values 0..end."""
        ...


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)
        self.c_proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, cache: LayerCache | None = None, start_pos: int = 0) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k, v = cache.update(k, v, start_pos)  # now all keys/values 0 .. start_pos + T
        dropout_p = self.dropout if self.training else 0.0
        if k.size(2) == T:  # queries and keys cover the same positions: plain causal
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        elif T == 1:  # one new token sees every cached position, no mask needed
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        else:  # a chunk after cached positions: query i sits at start_pos + i
            keep = torch.ones(T, k.size(2), dtype=torch.bool, device=x.device).tril(start_pos)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.d_model, 4 * config.d_model, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.d_model, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        # GPT-2's "gelu_new" is the tanh approximation; exact GELU would not match HF weights
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model, eps=1e-5, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model, eps=1e-5, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, cache: LayerCache | None = None, start_pos: int = 0) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, start_pos)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """GPT-2: token + learned position embeddings, pre-LN blocks, final LN, tied LM head."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.padded_vocab_size, config.d_model)
        self.wpe = nn.Embedding(config.seq_len, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model, eps=1e-5, bias=config.bias)
        self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: one matrix, counted and updated once
        self.apply(self._init_weights)
        # GPT-2 scales the projections that write into the residual stream by 1/sqrt(2·n_layer)
        # so the residual's variance does not grow with depth (two writes per block)
        residual_std = 0.02 / math.sqrt(2 * config.n_layer)
        for block in self.h:
            nn.init.normal_(block.attn.c_proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.c_proj.weight, mean=0.0, std=residual_std)
        # compiled callables of the blocks, for full-sequence passes (`compile_blocks`); a plain
        # list, so not submodules: state dicts keep the plain names
        self._compiled_blocks: list[Callable[[Tensor], Tensor]] | None = None

    def compile_blocks(self, backend: str = "inductor") -> None:
        """`torch.compile` each block on its own, as torchtitan does: what compiles under
        activation checkpointing (the checkpoint wraps the compiled block; a checkpoint inside
        a compiled region that graph-breaks, at FSDP2's hooks for one, leaves the whole block
        eager) and under FSDP2. Generation with a KV cache keeps calling the eager blocks."""
        self._compiled_blocks = [torch.compile(block, backend=backend) for block in self.h]

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def hidden_states(
        self, idx: Tensor, kv_cache: Sequence[LayerCache] | None = None, start_pos: int = 0
    ) -> Tensor:
        """Final-LayerNorm activations [B, T, d_model] for tokens at positions start_pos.."""
        T = idx.size(1)
        if start_pos + T > self.config.seq_len:
            raise ValueError(
                f"sequence of {T} tokens at position {start_pos} does not fit the model's "
                f"context (seq_len={self.config.seq_len}); crop the input"
            )
        pos = torch.arange(start_pos, start_pos + T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        recompute = self.config.activation_checkpointing and self.training and kv_cache is None
        compiled = self._compiled_blocks if kv_cache is None else None
        for i, block in enumerate(self.h):
            run = block if compiled is None else compiled[i]
            if recompute:
                x = checkpoint(run, x, use_reentrant=False)
            elif compiled is not None:
                x = run(x)
            else:
                x = block(x, None if kv_cache is None else kv_cache[i], start_pos)
        return self.ln_f(x)

    def forward(
        self, idx: Tensor, kv_cache: Sequence[LayerCache] | None = None, start_pos: int = 0
    ) -> Tensor:
        """Logits [B, T, padded_vocab_size] for token ids idx [B, T].

        With `kv_cache` (one slot per layer), idx holds only the new tokens, which sit at
        positions start_pos.. ; the cache supplies keys/values of the earlier positions.
        """
        return self.lm_head(self.hidden_states(idx, kv_cache, start_pos))

    def loss(self, idx: Tensor, targets: Tensor) -> Tensor:
        """Mean next-token cross-entropy (fp32) over all positions; targets [B, T].

        Targets equal to -100 are ignored (PyTorch's and HF's convention for padding).
        """
        return self.cross_entropy(self.hidden_states(idx), targets)

    def cross_entropy(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """Loss from hidden states, so a chunked version can replace it without [B,T,V] logits."""
        logits = self.lm_head(hidden)[..., : self.config.vocab_size]  # padded tail is not a token
        # .float() first: it copies the strided slice into a contiguous fp32 tensor in one go
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)

    def num_parameters(self, exclude_position_embeddings: bool = True) -> int:
        """Parameter count, tied embedding counted once (the convention in scaling-law papers)."""
        n = sum(p.numel() for p in self.parameters())  # parameters() already dedups tied ones
        return n - self.wpe.weight.numel() if exclude_position_embeddings else n

    def flops_per_token(self) -> float:
        """Training FLOPs per token (forward + backward), as in PaLM's / nanoGPT's MFU formula.

        6·N for the weight matmuls plus 12·n_layer·d_model·seq_len for attention scores/values.
        """
        c = self.config
        return 6.0 * self.num_parameters() + 12.0 * c.n_layer * c.d_model * c.seq_len
