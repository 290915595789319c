"""Parameter count and training FLOPs per token of a GPT-2-architecture model, from its shape.

Pure arithmetic (no torch), so `trainpipe estimate` can run anywhere. The layout counted is
`trainpipe.tasks.lm.gpt.GPT`'s: a token embedding of `padded_vocab_size` rows tied with the LM
head (counted once), learned positions [seq_len, d], and per block two LayerNorms, a fused qkv
Linear d→3d, the attention output projection d→d and the MLP d→4d→d, then a final LayerNorm.
With `bias=False` every Linear and LayerNorm drops its bias (nanoGPT's convention).

FLOPs per token follow PaLM's / nanoGPT's MFU convention: 6·N for the weight matmuls (2 forward,
4 backward per parameter) plus 12·n_layer·d_model·seq_len for attention scores and values, where
N leaves out the position embeddings (a lookup, not a matmul). Activation recomputation is not
counted: MFU measures useful model FLOPs, not what the hardware ends up executing.
"""

from __future__ import annotations

VOCAB_MULTIPLE = 64  # GPTConfig.padded_vocab_size rounds up to this (tensor-core friendly shapes)


def padded_vocab_size(vocab_size: int, multiple: int = VOCAB_MULTIPLE) -> int:
    """`vocab_size` rounded up to a multiple of `multiple` (the embedding's real row count)."""
    return -(-vocab_size // multiple) * multiple


def _check_shape(n_layer: int, n_head: int, d_model: int, seq_len: int, vocab_size: int) -> None:
    for name, value in (
        ("n_layer", n_layer),
        ("n_head", n_head),
        ("d_model", d_model),
        ("seq_len", seq_len),
        ("vocab_size", vocab_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if d_model % n_head:
        raise ValueError(f"d_model ({d_model}) must be divisible by n_head ({n_head})")


def gpt_block_parameters(d_model: int, bias: bool = True) -> int:
    """Parameters of one transformer block: 12·d² of weights plus LayerNorm (and bias) vectors."""
    d = d_model
    weights = 3 * d * d + d * d + 4 * d * d + 4 * d * d  # qkv, attn proj, MLP up, MLP down
    layer_norms = 2 * (2 * d if bias else d)  # ln_1, ln_2: weight (+ bias)
    linear_biases = (3 * d + d + 4 * d + d) if bias else 0
    return weights + layer_norms + linear_biases


def gpt_parameters(
    n_layer: int,
    n_head: int,
    d_model: int,
    seq_len: int,
    vocab_size: int,
    bias: bool = True,
    include_position_embeddings: bool = False,
) -> int:
    """Parameters of the GPT (tied embedding counted once; vocabulary padded to 64 inside).

    Without position embeddings by default: that is the N of the 6·N FLOPs rule and of
    `GPT.num_parameters()`. Memory estimates want `include_position_embeddings=True`.
    """
    _check_shape(n_layer, n_head, d_model, seq_len, vocab_size)
    n = padded_vocab_size(vocab_size) * d_model  # wte == lm_head
    n += n_layer * gpt_block_parameters(d_model, bias)
    n += 2 * d_model if bias else d_model  # ln_f
    if include_position_embeddings:
        n += seq_len * d_model
    return n


def gpt_flops_per_token(
    n_layer: int,
    n_head: int,
    d_model: int,
    seq_len: int,
    vocab_size: int,
    bias: bool = True,
) -> float:
    """Training FLOPs per token: 6·N + 12·n_layer·d_model·seq_len (N without positions)."""
    n = gpt_parameters(n_layer, n_head, d_model, seq_len, vocab_size, bias=bias)
    return 6.0 * n + 12.0 * n_layer * d_model * seq_len
