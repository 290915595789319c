"""Analytic GPT parameter count and FLOPs per token (trainpipe.perf.flops)."""

from __future__ import annotations

import pytest

from trainpipe.perf.flops import gpt_flops_per_token, gpt_parameters, padded_vocab_size

GPT2_SMALL = dict(n_layer=12, n_head=12, d_model=768, seq_len=1024, vocab_size=50257)


def _gpt2_small_by_hand(bias: bool) -> int:
    """GPT-2 small, layer by layer, as HF's GPT2LMHeadModel lays it out (vocab padded to 50304)."""
    d, vocab, layers = 768, 50304, 12

    def linear(n_in: int, n_out: int) -> int:
        return n_in * n_out + (n_out if bias else 0)

    layer_norm = 2 * d if bias else d
    block = 2 * layer_norm + linear(d, 3 * d) + linear(d, d) + linear(d, 4 * d) + linear(4 * d, d)
    return vocab * d + layers * block + layer_norm  # tied head adds nothing; final LayerNorm


@pytest.mark.parametrize("bias", [True, False])
def test_gpt2_small_parameters_match_a_layer_by_layer_count(bias: bool) -> None:
    n = gpt_parameters(**GPT2_SMALL, bias=bias)
    assert n == _gpt2_small_by_hand(bias)
    with_positions = gpt_parameters(**GPT2_SMALL, bias=bias, include_position_embeddings=True)
    assert with_positions == n + 1024 * 768


def test_gpt2_small_is_the_124m_model() -> None:
    assert 123.6e6 <= gpt_parameters(**GPT2_SMALL) <= 124.5e6
    assert 123.6e6 <= gpt_parameters(**GPT2_SMALL, include_position_embeddings=True) <= 124.5e6


def test_flops_per_token_is_6n_plus_attention() -> None:
    n = _gpt2_small_by_hand(bias=True)
    assert gpt_flops_per_token(**GPT2_SMALL) == 6 * n + 12 * 12 * 768 * 1024


def test_vocabulary_is_padded_to_a_multiple_of_64() -> None:
    assert [padded_vocab_size(v) for v in (1, 64, 65, 50257)] == [64, 64, 128, 50304]
    # the padded rows are real parameters: 50257 and 50304 tokens give the same model
    padded = dict(GPT2_SMALL, vocab_size=50304)
    assert gpt_parameters(**GPT2_SMALL) == gpt_parameters(**padded)


def test_rejects_heads_that_do_not_divide_the_width() -> None:
    with pytest.raises(ValueError, match="n_head"):
        gpt_parameters(n_layer=2, n_head=5, d_model=32, seq_len=8, vocab_size=100)


@pytest.mark.parametrize("bias", [True, False])
def test_agrees_with_the_real_model(bias: bool) -> None:
    gpt = pytest.importorskip("trainpipe.tasks.lm.gpt")
    shape = dict(n_layer=2, n_head=2, d_model=32, seq_len=16, vocab_size=100)
    model = gpt.GPT(gpt.GPTConfig(**shape, bias=bias))
    assert gpt_parameters(**shape, bias=bias) == model.num_parameters()
    assert gpt_parameters(
        **shape, bias=bias, include_position_embeddings=True
    ) == model.num_parameters(exclude_position_embeddings=False)
    assert gpt_flops_per_token(**shape, bias=bias) == pytest.approx(model.flops_per_token())
