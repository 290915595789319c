"""`trainpipe estimate`'s engine: parameters, memory per device, time and cost on paper."""

from __future__ import annotations

import dataclasses
import math

import pytest

from trainpipe.perf.estimate import Assumptions, ModelShape, RunShape, estimate, format_estimate

GPT2_SMALL = ModelShape(n_layer=12, n_head=12, d_model=768, seq_len=1024, vocab_size=50257)
H100 = "NVIDIA H100 80GB HBM3"


def _run(**changes: object) -> RunShape:
    base = RunShape(micro_batch=8, devices_per_node=2, grad_accum=4, max_steps=1000)
    return dataclasses.replace(base, **changes)


def test_gpt2_small_parameters_and_flops() -> None:
    est = estimate(GPT2_SMALL, _run())
    assert 123.6e6 <= est.parameters <= 124.5e6
    assert est.parameters_total - est.parameters == 1024 * 768  # learned positions
    assert est.flops_per_token == 6 * est.parameters + 12 * 12 * 768 * 1024


def test_tokens_per_step_counts_every_sequence_of_the_optimizer_step() -> None:
    run = _run(micro_batch=16, devices_per_node=8, nodes=2, grad_accum=4)
    assert estimate(GPT2_SMALL, run).tokens_per_step == 16 * 1024 * 4 * 8 * 2


def test_bf16_mixed_keeps_sixteen_bytes_of_state_per_parameter() -> None:
    est = estimate(GPT2_SMALL, _run(precision="bf16-mixed"))
    p = est.parameters_total
    # fp32 master weights, fp32 grads, two fp32 Adam moments; plus the bf16 compute copy
    assert (est.memory.weights, est.memory.gradients, est.memory.optimizer) == (4 * p, 4 * p, 8 * p)
    assert est.memory.working_weights == 2 * p
    true16 = estimate(GPT2_SMALL, _run(precision="bf16-true")).memory
    assert (true16.weights, true16.gradients, true16.optimizer) == (2 * p, 2 * p, 4 * p)
    assert true16.working_weights == 0


def test_fsdp_halves_only_the_sharded_parts_over_two_devices() -> None:
    replicated = estimate(GPT2_SMALL, _run(devices_per_node=2, sharded=False)).memory
    sharded = estimate(GPT2_SMALL, _run(devices_per_node=2, sharded=True)).memory
    assert sharded.weights == replicated.weights / 2
    assert sharded.gradients == replicated.gradients / 2
    assert sharded.optimizer == replicated.optimizer / 2
    # each device still runs its own micro-batch through the whole model
    assert sharded.activations == replicated.activations
    assert sharded.logits == replicated.logits
    # FSDP gathers the embeddings and a block or two at a time, not a full compute copy
    assert 0 < sharded.working_weights < replicated.working_weights / 2
    assert sharded.total < replicated.total


def test_activation_per_layer_follows_korthikanti_with_flash_attention() -> None:
    # 34·s·b·h bytes per layer at 16 bits (no s² score term with flash attention), plus the
    # fp32 log-sum-exp flash attention keeps per head and token
    one, two = (
        estimate(dataclasses.replace(GPT2_SMALL, n_layer=n), _run(micro_batch=8)).memory
        for n in (1, 2)
    )
    s, b, h, a = 1024, 8, 768, 12
    assert two.activations - one.activations == 34 * s * b * h + 4 * a * s * b


@pytest.mark.parametrize("precision", ["bf16-mixed", "32-true", "bf16-true"])
def test_logits_are_counted_at_their_peak_in_the_loss_backward(precision: str) -> None:
    """Issue 20, item 11: at the loss's backward the fp32 log-softmax, the gradient into it and
    the gradient out of it are held at once: 12 bytes per logit, whatever the precision (counting
    the forward's 10 left gpt2_124m's batch of 16 ~1.5 GiB short)."""
    est = estimate(GPT2_SMALL, _run(micro_batch=16, precision=precision))
    elements = 16 * 1024 * 50304  # padded vocabulary
    assert est.memory.logits == 12 * elements
    if precision == "bf16-mixed":
        assert (12 - 10) * elements / 2**30 == pytest.approx(1.53, abs=0.01)


def test_activation_checkpointing_lowers_activations_only() -> None:
    full = estimate(GPT2_SMALL, _run(activation_checkpointing=False))
    ckpt = estimate(GPT2_SMALL, _run(activation_checkpointing=True))
    assert ckpt.memory.activations < full.memory.activations / 4
    assert ckpt.memory.weights == full.memory.weights
    assert ckpt.memory.logits == full.memory.logits
    assert ckpt.flops_per_token == full.flops_per_token  # model FLOPs: recomputation not counted


def test_throughput_follows_mfu_peak_and_device_count() -> None:
    run = _run(devices_per_node=8, max_steps=5000)
    est = estimate(GPT2_SMALL, run, Assumptions(mfu=0.4, peak_tflops=1000.0))
    assert est.tokens_per_s == pytest.approx(8 * 0.4 * 1000e12 / est.flops_per_token)
    assert est.step_time_s == pytest.approx(est.tokens_per_step / est.tokens_per_s)
    assert est.wall_hours == pytest.approx(5000 * est.step_time_s / 3600)


def test_doubling_mfu_halves_wall_time() -> None:
    slow = estimate(GPT2_SMALL, _run(), Assumptions(mfu=0.3, peak_tflops=989.4))
    fast = estimate(GPT2_SMALL, _run(), Assumptions(mfu=0.6, peak_tflops=989.4))
    assert fast.wall_hours == pytest.approx(slow.wall_hours / 2)
    assert fast.tokens_per_s == pytest.approx(2 * slow.tokens_per_s)


def test_cost_is_hours_times_devices_times_price() -> None:
    run = _run(devices_per_node=8, nodes=2)
    est = estimate(GPT2_SMALL, run, Assumptions(device=H100, gpu_hour_usd=2.5))
    assert est.cost_usd == pytest.approx(est.wall_hours * 16 * 2.5)
    no_price = estimate(GPT2_SMALL, run, Assumptions(device=H100))
    assert no_price.cost_usd is None and no_price.wall_hours == est.wall_hours


def test_token_budget_rounds_up_to_whole_steps() -> None:
    run = _run(max_steps=None, token_budget=10**9)
    est = estimate(GPT2_SMALL, run)
    per_step = 8 * 1024 * 4 * 2
    assert est.steps == math.ceil(10**9 / per_step)
    assert est.tokens == est.steps * per_step >= 10**9


def test_peak_comes_from_the_override_else_the_device_table_else_nowhere() -> None:
    table = estimate(GPT2_SMALL, _run(), Assumptions(device=H100))
    assert (table.peak_tflops, table.peak_source) == (989.4, "table")
    override = estimate(GPT2_SMALL, _run(), Assumptions(device=H100, peak_tflops=500.0))
    assert (override.peak_tflops, override.peak_source) == (500.0, "override")
    unknown = estimate(GPT2_SMALL, _run(), Assumptions(device="Some Future GPU"))
    assert unknown.peak_tflops is None
    assert unknown.tokens_per_s is None and unknown.wall_hours is None and unknown.cost_usd is None


def test_rejects_what_it_cannot_estimate() -> None:
    with pytest.raises(ValueError, match="precision"):
        estimate(GPT2_SMALL, _run(precision="64-true"))
    with pytest.raises(ValueError, match="not both"):
        estimate(GPT2_SMALL, _run(max_steps=10, token_budget=10**6))
    with pytest.raises(ValueError, match="MFU"):
        estimate(GPT2_SMALL, _run(), Assumptions(mfu=0.0))


def test_format_prints_gib_counts_and_hours() -> None:
    est = estimate(GPT2_SMALL, _run(), Assumptions(device=H100, gpu_hour_usd=2.0))
    text = format_estimate(est)
    assert f"{est.parameters / 1e6:.2f}M" in text
    assert f"{est.memory.total / 2**30:.2f}" in text
    assert f"{est.wall_hours:.2f} h" in text
    assert f"${est.cost_usd:,.2f}" in text
    assert "n/a" in format_estimate(estimate(GPT2_SMALL, _run()))  # no peak: no throughput
