"""Sampling: the KV cache changes speed, never tokens; seeds, top-k, stop tokens, padded vocab."""

from __future__ import annotations

import pytest
import torch

from trainpipe.tasks.lm.generate import generate, make_kv_cache
from trainpipe.tasks.lm.gpt import GPT, GPTConfig

VOCAB, SEQ_LEN = 50, 16


@pytest.fixture
def model() -> GPT:
    """A tiny GPT with large random weights (every bias and LayerNorm too, all mapped/used)."""
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=VOCAB, seq_len=SEQ_LEN, n_layer=2, n_head=2, d_model=32))
    with torch.no_grad():
        for p in gpt.parameters():
            p.normal_(0.0, 0.3)
    return gpt


def test_cached_forward_in_chunks_equals_one_full_forward(model: GPT) -> None:
    model.eval()
    idx = torch.randint(0, VOCAB, (2, 12))
    cache = make_kv_cache(model, batch=2)
    with torch.inference_mode():
        # prefill, a chunk after cached positions (needs a mask), then single tokens
        chunks = [(0, 5), (5, 9), (9, 10), (10, 12)]
        parts = [model(idx[:, a:b], cache, start_pos=a) for a, b in chunks]
        torch.testing.assert_close(torch.cat(parts, dim=1), model(idx), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("max_new_tokens", [10, 40])  # within seq_len, and well past it
def test_greedy_with_cache_equals_greedy_without(model: GPT, max_new_tokens: int) -> None:
    prompt = [3, 1, 4, 1, 5]
    cached = generate(model, prompt, max_new_tokens, temperature=0)
    uncached = generate(model, prompt, max_new_tokens, temperature=0, use_cache=False)
    assert len(cached) == max_new_tokens
    assert cached == uncached


@pytest.mark.parametrize("max_new_tokens", [10, 40])
def test_sampling_with_cache_equals_sampling_without(model: GPT, max_new_tokens: int) -> None:
    # random greedy models fall into short loops; sampled text is varied, so this comparison
    # would catch a cache that is only roughly right
    cached = generate(model, [3, 1, 4], max_new_tokens, seed=0)
    assert len(set(cached)) > max_new_tokens // 3
    assert cached == generate(model, [3, 1, 4], max_new_tokens, seed=0, use_cache=False)


def test_prompt_longer_than_the_context_is_cropped(model: GPT) -> None:
    prompt = list(range(SEQ_LEN + 7))
    cached = generate(model, prompt, 5, temperature=0)
    assert cached == generate(model, prompt, 5, temperature=0, use_cache=False)
    # only the last seq_len tokens matter
    assert cached == generate(model, [0] + prompt[-SEQ_LEN:], 5, temperature=0)


def test_seeded_sampling_is_reproducible_and_leaves_the_global_rng_alone(model: GPT) -> None:
    rng_before = torch.get_rng_state()
    first = generate(model, [7], 30, seed=123)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert generate(model, [7], 30, seed=123) == first
    assert generate(model, [7], 30, seed=124) != first


def test_top_k_1_is_greedy(model: GPT) -> None:
    greedy = generate(model, [2, 9], 20, temperature=0)
    assert generate(model, [2, 9], 20, temperature=1.5, top_k=1, seed=0) == greedy


def test_top_k_restricts_to_the_k_most_likely_tokens(model: GPT) -> None:
    prompt = [4, 2]
    with torch.inference_mode():
        logits = model.eval()(torch.tensor([prompt]))[0, -1, :VOCAB]
    top3 = set(logits.topk(3).indices.tolist())
    firsts = {generate(model, prompt, 1, temperature=5.0, top_k=3, seed=s)[0] for s in range(40)}
    assert firsts <= top3 and len(firsts) > 1


def test_padded_vocabulary_ids_are_never_produced(model: GPT) -> None:
    # make every padded id the model's favourite: final LN outputs the all-ones vector and
    # the padded rows of the tied embedding are all-ones, so their logit is d_model = 32
    with torch.no_grad():
        model.ln_f.weight.zero_()
        model.ln_f.bias.fill_(1.0)
        model.wte.weight[VOCAB:] = 1.0
        assert model.eval()(torch.tensor([[1]]))[0, -1].argmax() >= VOCAB
    assert all(t < VOCAB for t in generate(model, [1], 20, temperature=0))
    assert all(t < VOCAB for t in generate(model, [1], 50, temperature=3.0, seed=0))


def test_stop_token_ends_generation(model: GPT) -> None:
    full = generate(model, [5], 20, temperature=0)
    stop = full[4]
    stopped = generate(model, [5], 20, temperature=0, stop_token=stop)
    assert stopped == full[: full.index(stop) + 1]


def test_model_mode_is_restored(model: GPT) -> None:
    model.train()
    generate(model, [1], 2)
    assert model.training
    model.eval()
    generate(model, [1], 2)
    assert not model.training


def test_empty_prompt_is_refused(model: GPT) -> None:
    with pytest.raises(ValueError, match="prompt"):
        generate(model, [], 5)
