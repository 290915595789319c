"""The GPT-2 model: shapes, initialisation, parameter/FLOP counts, learning, causality."""

from __future__ import annotations

import math

import pytest
import torch

from trainpipe.tasks.lm.gpt import GPT, GPTConfig


def tiny(**overrides) -> GPTConfig:
    kwargs = dict(vocab_size=100, seq_len=16, n_layer=2, n_head=2, d_model=32)
    return GPTConfig(**{**kwargs, **overrides})


def test_logits_cover_the_padded_vocabulary() -> None:
    assert tiny(vocab_size=100).padded_vocab_size == 128
    assert tiny(vocab_size=64).padded_vocab_size == 64
    assert tiny(vocab_size=50257).padded_vocab_size == 50304  # GPT-2's tokenizer
    model = GPT(tiny(vocab_size=100))
    logits = model(torch.randint(0, 100, (3, 10)))
    assert logits.shape == (3, 10, 128)
    assert model.lm_head.weight is model.wte.weight  # tied


def test_input_longer_than_the_context_is_refused() -> None:
    model = GPT(tiny(seq_len=8))
    model(torch.zeros(1, 8, dtype=torch.long))  # exactly seq_len is fine
    with pytest.raises(ValueError, match="seq_len=8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_gpt2_initialisation() -> None:
    torch.manual_seed(0)
    n_layer = 8
    model = GPT(tiny(n_layer=n_layer, d_model=128, n_head=4))
    residual_std = 0.02 / math.sqrt(2 * n_layer)
    # 16k-260k samples per matrix: the sample std is within ~1% of the true one
    for block in model.h:
        for proj in (block.attn.c_proj, block.mlp.c_proj):
            assert proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
            assert torch.all(proj.bias == 0)
        assert block.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert block.mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.wpe.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_parameter_count_matches_a_hand_count() -> None:
    V, S, d = 128, 16, 32  # padded vocab 128 for vocab_size 100
    per_layer = (
        2 * d  # ln_1
        + d * 3 * d
        + 3 * d  # c_attn
        + d * d
        + d  # attn.c_proj
        + 2 * d  # ln_2
        + d * 4 * d
        + 4 * d  # c_fc
        + 4 * d * d
        + d  # mlp.c_proj
    )
    expected = V * d + 2 * per_layer + 2 * d  # wte (tied with lm_head) + blocks + ln_f
    model = GPT(tiny())
    assert model.num_parameters() == expected
    assert model.num_parameters(exclude_position_embeddings=False) == expected + S * d
    # the state dict lists the tied matrix twice (wte and lm_head); the count must not
    state_total = sum(t.numel() for t in model.state_dict().values())
    assert model.num_parameters(exclude_position_embeddings=False) == state_total - V * d
    assert model.flops_per_token() == 6 * expected + 12 * 2 * d * S


def test_bias_free_model_has_no_biases() -> None:
    with_bias, without = GPT(tiny()), GPT(tiny(bias=False))
    n_bias = sum(p.numel() for name, p in with_bias.named_parameters() if name.endswith("bias"))
    assert n_bias > 0
    assert not [name for name, _ in without.named_parameters() if name.endswith("bias")]
    assert without.num_parameters() == with_bias.num_parameters() - n_bias


def test_loss_is_over_the_real_vocabulary() -> None:
    # at init the logits are near zero, so the loss is about log(#classes): the padded tail
    # (here 54 of 64 columns) must not count as classes
    torch.manual_seed(0)
    model = GPT(tiny(vocab_size=10))
    idx = torch.randint(0, 10, (4, 16))
    loss = model.loss(idx, idx.roll(-1, dims=1))
    assert loss.dtype == torch.float32 and loss.ndim == 0
    assert loss.item() == pytest.approx(math.log(10), abs=0.1)


def test_a_few_adamw_steps_overfit_a_repeating_sequence() -> None:
    torch.manual_seed(0)
    model = GPT(tiny(vocab_size=16))
    seq = torch.arange(8).repeat(5)  # 0..7 0..7 ...: every next token is determined
    idx, targets = seq[:16].expand(4, 16), seq[1:17].expand(4, 16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = model.loss(idx, targets).item()
    for _ in range(25):
        loss = model.loss(idx, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first > 2.0 and loss.item() < 0.1 * first


def test_attention_is_causal() -> None:
    torch.manual_seed(0)
    model = GPT(tiny()).eval()
    idx = torch.randint(0, 100, (2, 12))
    changed = idx.clone()
    changed[:, 7] = (idx[:, 7] + 1) % 100
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def _loss_and_grads(checkpointing: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    torch.manual_seed(0)
    model = GPT(tiny(activation_checkpointing=checkpointing)).train()
    block_calls = 0

    def count(*_) -> None:
        nonlocal block_calls
        block_calls += 1

    model.h[0].register_forward_pre_hook(count)
    idx = torch.randint(0, 100, (2, 16))
    loss = model.loss(idx, idx.roll(-1, dims=1))
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters()}, block_calls


def test_activation_checkpointing_recomputes_with_identical_results() -> None:
    loss, grads, calls = _loss_and_grads(checkpointing=False)
    ckpt_loss, ckpt_grads, ckpt_calls = _loss_and_grads(checkpointing=True)
    assert (calls, ckpt_calls) == (1, 2)  # the block really ran again during backward
    torch.testing.assert_close(ckpt_loss, loss)
    assert grads.keys() == ckpt_grads.keys()
    for name in grads:
        torch.testing.assert_close(ckpt_grads[name], grads[name], msg=name)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"d_model": 30, "n_head": 4}, ("d_model", "n_head")),
        ({"vocab_size": 0}, ("vocab_size",)),
        ({"seq_len": -1}, ("seq_len",)),
        ({"n_layer": 0}, ("n_layer",)),
        ({"n_head": 0}, ("n_head",)),
        ({"d_model": 2.5}, ("d_model",)),
        ({"dropout": 1.0}, ("dropout",)),
    ],
)
def test_bad_config_names_the_key(overrides: dict, words: tuple[str, ...]) -> None:
    with pytest.raises(ValueError) as info:
        tiny(**overrides)
    for word in words:
        assert word in str(info.value)
