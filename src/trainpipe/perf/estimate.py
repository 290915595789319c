"""`trainpipe estimate`: parameters, FLOPs, memory per GPU, time and cost of a GPT run, on paper.

No torch, no GPU: the caller maps its config onto `ModelShape`, `RunShape` and `Assumptions`.
Memory is the steady-state peak of one device (top of the graph: all activations held, weights,
gradients and optimizer state resident); allocator fragmentation, the CUDA context (~0.5 GiB),
NCCL buffers and temporary matmul workspaces come on top.

Bytes per parameter (`_PRECISION_BYTES`):
- `32-true`: fp32 weights 4 + fp32 grads 4 + AdamW moments 2×4.
- `bf16-mixed` / `16-mixed`: fp32 master weights 4 + fp32 grads 4 + AdamW 2×4, plus a 16-bit
  working copy of the weights (2): autocast's cast of each weight, kept for the backward.
- `bf16-true` / `16-true`: 16-bit weights 2 + grads 2 + AdamW moments 2×2 (torch's AdamW keeps
  its state in the parameter's dtype).
Sharded (FSDP over all devices): weights, grads and AdamW state are divided by the device
count; the working copy becomes FSDP's gathered units in the compute dtype: the root unit
(embeddings and final LayerNorm, wrapped blocks being the other units) plus two blocks, the one
computing and the one prefetched.

Activations per layer follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in
Large Transformer Models"), no tensor/sequence parallelism, with flash attention: their
s·b·h·(34 + 5·a·s/h) bytes minus the 5·a·s/h score/softmax term flash attention never stores,
plus its fp32 log-sum-exp (4·a·s·b). The 34 is 16 stored s·b·h tensors at 2 bytes plus two
1-byte dropout masks, so it is scaled by the element size (4 bytes for 32-true). Around the
blocks: the final LayerNorm's and the LM head's inputs and the embedding dropout mask. With
activation checkpointing only each block's input is kept, plus one block's full activations
while it is recomputed. Logits [b, s, padded vocab], 12 bytes an element at their peak, which is
in the loss's backward (every activation is still held then): the fp32 log-softmax saved by the
forward, the fp32 gradient coming into it from the NLL and the fp32 gradient it produces. (The
forward's own peak is lower: the head's output in the compute dtype, its fp32 copy and the
log-softmax, 10 bytes under 16-bit autocast, 8 in fp32.) Not yet checked against a measured GPU
peak (docs/benchmarks.md).

Time at an assumed MFU uses model FLOPs (6·N + attention), so checkpointing's recomputation
does not show up as time here: it shows up as a lower MFU on the real machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trainpipe.perf import flops, peaks

GIB = 2**30


@dataclass(frozen=True)
class ModelShape:
    """GPT shape, as GPTConfig has it (vocab_size is the tokenizer's; padded to 64 inside)."""

    n_layer: int
    n_head: int
    d_model: int
    seq_len: int
    vocab_size: int
    bias: bool = True


@dataclass(frozen=True)
class RunShape:
    """How the run is laid out. Give at most one of `max_steps` and `token_budget`."""

    micro_batch: int  # sequences per device per forward/backward
    devices_per_node: int = 1
    nodes: int = 1
    grad_accum: int = 1  # micro-batches per optimizer step
    precision: str = "bf16-mixed"  # Lightning's precision string
    sharded: bool = False  # FSDP: weights, grads and optimizer state sharded over all devices
    activation_checkpointing: bool = False
    max_steps: int | None = None  # optimizer steps
    token_budget: int | None = None  # tokens to train on (rounded up to whole steps)

    @property
    def devices(self) -> int:
        return self.devices_per_node * self.nodes


@dataclass(frozen=True)
class Assumptions:
    """What the estimate cannot know. `peak_tflops` wins over `device`'s table entry."""

    mfu: float = 0.40
    peak_tflops: float | None = None  # dense peak per device
    device: str | None = None  # a name peaks.py knows, e.g. "NVIDIA H100 80GB HBM3"
    tf32: bool = False  # 32-true with TF32 matmuls enabled
    gpu_hour_usd: float | None = None  # price of one device for one hour


@dataclass(frozen=True)
class Memory:
    """Bytes per device at the peak, by what holds them."""

    weights: float
    working_weights: float  # 16-bit compute copies (autocast cache or FSDP's gathered units)
    gradients: float
    optimizer: float  # AdamW's two moments
    activations: float
    logits: float

    @property
    def total(self) -> float:
        return (
            self.weights
            + self.working_weights
            + self.gradients
            + self.optimizer
            + self.activations
            + self.logits
        )


@dataclass(frozen=True)
class Estimate:
    """The numbers `format_estimate` prints. Throughput fields are None without a peak."""

    model: ModelShape
    run: RunShape
    assumptions: Assumptions
    parameters: int  # without position embeddings (the N of 6·N)
    parameters_total: int  # with them (what occupies memory)
    flops_per_token: float
    tokens_per_step: int
    memory: Memory
    peak_tflops: float | None
    peak_source: str | None  # "override", "table" or None
    tokens_per_s: float | None  # whole job
    step_time_s: float | None
    steps: int | None
    tokens: int | None
    wall_hours: float | None
    cost_usd: float | None


@dataclass(frozen=True)
class _PrecisionBytes:
    weights: int  # per parameter, the copy the optimizer updates
    working: int  # per parameter, extra compute-dtype copy (0: computes on `weights` directly)
    grads: int
    adam: int  # both moments
    compute: int  # activation / logit element size


_PRECISION_BYTES = {
    "32-true": _PrecisionBytes(weights=4, working=0, grads=4, adam=8, compute=4),
    "bf16-mixed": _PrecisionBytes(weights=4, working=2, grads=4, adam=8, compute=2),
    "16-mixed": _PrecisionBytes(weights=4, working=2, grads=4, adam=8, compute=2),
    "bf16-true": _PrecisionBytes(weights=2, working=0, grads=2, adam=4, compute=2),
    "16-true": _PrecisionBytes(weights=2, working=0, grads=2, adam=4, compute=2),
}
_PRECISION_ALIASES = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}


def _precision_bytes(precision: str) -> _PrecisionBytes:
    key = _PRECISION_ALIASES.get(str(precision), str(precision))
    if key not in _PRECISION_BYTES:
        known = ", ".join(sorted(_PRECISION_BYTES) + sorted(_PRECISION_ALIASES))
        raise ValueError(f"precision {precision!r} is not one of: {known}")
    return _PRECISION_BYTES[key]


def _activation_bytes(model: ModelShape, run: RunShape, p: _PrecisionBytes) -> float:
    tokens = run.micro_batch * model.seq_len  # s·b
    sbh = tokens * model.d_model
    # one block: 16 stored s·b·h tensors + 2 one-byte dropout masks; flash attention's fp32 LSE
    block = sbh * (16 * p.compute + 2) + 4 * model.n_head * tokens
    around = sbh * (2 * p.compute + 1)  # final LN input, LM head input, embedding dropout mask
    if run.activation_checkpointing:
        return model.n_layer * sbh * p.compute + block + around
    return model.n_layer * block + around


def _memory(model: ModelShape, run: RunShape, params_total: int) -> Memory:
    p = _precision_bytes(run.precision)
    shards = run.devices if run.sharded else 1
    if run.sharded:
        block = flops.gpt_block_parameters(model.d_model, model.bias)
        outside_blocks = params_total - model.n_layer * block  # embeddings, final LayerNorm
        # gathered: the root unit (stays unsharded through forward and backward), the block
        # computing and the one prefetched
        working = (outside_blocks + 2 * block) * p.compute
    else:
        working = params_total * p.working
    vocab = flops.padded_vocab_size(model.vocab_size)
    logit_elements = run.micro_batch * model.seq_len * vocab
    # forward: head output (compute dtype) + its fp32 copy (none if already fp32) + log-softmax;
    # the loss's backward: saved log-softmax + the gradients into and out of it, all fp32
    forward_bytes = p.compute + (4 if p.compute != 4 else 0) + 4
    logit_bytes = max(forward_bytes, 3 * 4)
    return Memory(
        weights=params_total * p.weights / shards,
        working_weights=working,
        gradients=params_total * p.grads / shards,
        optimizer=params_total * p.adam / shards,
        activations=_activation_bytes(model, run, p),
        logits=logit_elements * logit_bytes,
    )


def _resolve_peak(run: RunShape, a: Assumptions) -> tuple[float | None, str | None]:
    if a.peak_tflops is not None:
        return a.peak_tflops, "override"
    if a.device is not None:
        value = peaks.peak_tflops(a.device, run.precision, tf32=a.tf32)
        if value is not None:
            return value, "table"
    return None, None


def _check(run: RunShape, a: Assumptions) -> None:
    for name in ("micro_batch", "devices_per_node", "nodes", "grad_accum"):
        if getattr(run, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(run, name)}")
    if run.max_steps is not None and run.token_budget is not None:
        raise ValueError("give max_steps or token_budget, not both")
    if not 0.0 < a.mfu <= 1.0:
        raise ValueError(f"assumed MFU must be in (0, 1], got {a.mfu}")


def estimate(model: ModelShape, run: RunShape, assumptions: Assumptions | None = None) -> Estimate:
    """Everything `trainpipe estimate` reports for one model, layout and set of assumptions."""
    a = assumptions or Assumptions()
    _check(run, a)
    shape = (model.n_layer, model.n_head, model.d_model, model.seq_len, model.vocab_size)
    n = flops.gpt_parameters(*shape, bias=model.bias)
    n_total = flops.gpt_parameters(*shape, bias=model.bias, include_position_embeddings=True)
    fpt = flops.gpt_flops_per_token(*shape, bias=model.bias)
    tokens_per_step = run.micro_batch * model.seq_len * run.grad_accum * run.devices
    peak, source = _resolve_peak(run, a)

    steps = run.max_steps
    if run.token_budget is not None:
        steps = math.ceil(run.token_budget / tokens_per_step)
    tokens = steps * tokens_per_step if steps is not None else None

    tokens_per_s = step_time = wall_hours = cost = None
    if peak is not None:
        tokens_per_s = run.devices * a.mfu * peak * 1e12 / fpt
        step_time = tokens_per_step / tokens_per_s
        if steps is not None:
            wall_hours = steps * step_time / 3600
            if a.gpu_hour_usd is not None:
                cost = wall_hours * run.devices * a.gpu_hour_usd
    return Estimate(
        model=model,
        run=run,
        assumptions=a,
        parameters=n,
        parameters_total=n_total,
        flops_per_token=fpt,
        tokens_per_step=tokens_per_step,
        memory=_memory(model, run, n_total),
        peak_tflops=peak,
        peak_source=source,
        tokens_per_s=tokens_per_s,
        step_time_s=step_time,
        steps=steps,
        tokens=tokens,
        wall_hours=wall_hours,
        cost_usd=cost,
    )


def _count(n: float) -> str:
    """123.69M, 1.50B, 12.3K: counts people compare at a glance."""
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= size:
            return f"{n / size:.2f}{suffix}"
    return f"{n:g}"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 3600:.2f} h"


def format_estimate(est: Estimate) -> str:
    """A plain-text table of an Estimate (GiB with 2 decimals, M/B counts, hours)."""
    m, r, a, mem = est.model, est.run, est.assumptions, est.memory
    layout = f"{r.devices} device(s) ({r.nodes} node(s) × {r.devices_per_node})"
    rows: list[tuple[str, str]] = [
        (
            "model",
            f"GPT {m.n_layer} layers, {m.n_head} heads, d_model {m.d_model}, seq_len {m.seq_len}, "
            f"vocab {m.vocab_size} ({flops.padded_vocab_size(m.vocab_size)} padded)"
            + ("" if m.bias else ", no bias"),
        ),
        ("parameters", f"{_count(est.parameters)} ({_count(est.parameters_total)} with positions)"),
        ("FLOPs / token", f"{est.flops_per_token / 1e9:.3f} GFLOP (6·N + 12·L·d·s)"),
        ("devices", layout),
        (
            "batch",
            f"{r.micro_batch} seq/device × {r.grad_accum} accumulation → "
            f"{_count(est.tokens_per_step)} tokens/step",
        ),
        (
            "layout",
            f"{r.precision}, {'FSDP (sharded)' if r.sharded else 'replicated (DDP)'}, "
            f"activation checkpointing {'on' if r.activation_checkpointing else 'off'}",
        ),
        ("", ""),
        ("memory per device", "GiB"),
    ]
    for label, value in (
        ("  weights", mem.weights),
        ("  working copy", mem.working_weights),
        ("  gradients", mem.gradients),
        ("  AdamW state", mem.optimizer),
        ("  activations", mem.activations),
        ("  logits", mem.logits),
        ("  total", mem.total),
    ):
        rows.append((label, f"{value / GIB:.2f}"))
    rows.append(("", ""))
    if est.peak_tflops is None:
        rows.append(("throughput", "n/a: no peak TFLOP/s (give one, or a device the table knows)"))
    else:
        where = a.device if est.peak_source == "table" else "given"
        rows.append(("assumed MFU", f"{a.mfu:.0%} of {est.peak_tflops:g} TFLOP/s ({where})"))
        rows.append(("tokens / s (job)", _count(est.tokens_per_s)))
        rows.append(("time / step", _duration(est.step_time_s)))
    if est.steps is not None:
        rows.append(("steps", f"{est.steps} ({_count(est.tokens)} tokens)"))
    if est.wall_hours is not None:
        rows.append(("wall time", f"{est.wall_hours:.2f} h"))
        gpu_hours = est.wall_hours * r.devices
        cost = "n/a (no price per GPU-hour)"
        if est.cost_usd is not None:
            cost = f"${est.cost_usd:,.2f} ({gpu_hours:.1f} GPU-h × ${a.gpu_hour_usd:g})"
        rows.append(("cost", cost))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}".rstrip() for label, value in rows)
