"""GPT-2 124M on one GPU: `trainpipe train experiment=gpt2_124m` vs a plain PyTorch loop over the
same GPT module, data and optimizer, eager and compiled, interleaved.

trainpipe's numbers come from the ThroughputMonitor inside a real `trainpipe train` run (progress
bar on a pseudo-terminal, MLflow logging to a sqlite store, resume-checkpoint and divergence
callbacks: the defaults), with validation, testing, registration and text samples off, since
the plain loop does none of them. The plain loop, in this process: trainpipe's `GPT`, AdamW
(lr 6e-4, betas 0.9/0.95, weight decay 0.1 on matrices, fused on CUDA), warmup + cosine per
step, bf16 autocast, TF32, gradient clipping at 1.0, `torch.compile(model.loss)` when compiled,
windows of the same prepared token array (the stdlib with a 50257-token BPE) gathered on the GPU.
Both are timed alike: CUDA events at step ends, the first 5 steps left out; first-step time is
the first optimizer step (compilation included), peak memory `torch.cuda.max_memory_allocated`.
MFU = tokens/s × FLOPs per token (6·N + 12·L·d·T) / the GPU's dense bf16 peak (perf/peaks.py).

    python benchmarks/gpu_gpt.py [--rounds 2] [--steps 60] [--batch 16] [--modes eager,compiled]
    python benchmarks/gpu_gpt.py --tiny     # CPU smoke test of both paths (1 torch thread); its
                                            # numbers mean nothing

Goal (issue 10): trainpipe ≥ 0.97× the plain loop's tokens/s, eager and compiled.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import common

GOAL = 0.97
WARMUP_STEPS = 5  # the ThroughputMonitor's default, also left out of the plain loop
GPT2 = {"n_layer": 12, "n_head": 12, "d_model": 768, "seq_len": 1024}
TINY = {"n_layer": 2, "n_head": 2, "d_model": 64, "seq_len": 64}


@dataclass
class Result:
    tokens_per_s: float
    step_time_ms: float
    first_step_s: float | None
    peak_mem_gib: float | None
    mfu: float | None


def overrides(args: argparse.Namespace, cache: Path) -> list[str]:
    """`experiment=gpt2_124m` as this benchmark runs it (on the CPU with --tiny)."""
    shape = TINY if args.tiny else GPT2
    common_args = [
        "experiment=gpt2_124m",
        *(f"model.{key}={value}" for key, value in shape.items()),
        f"data.batch_size={args.batch}",
        f"paths.cache_dir={cache}",
    ]
    if args.tiny:
        return [
            *common_args,
            "trainer=cpu",
            "trainer.precision=32-true",
            "tokenizer=bytes",
            "data.max_bytes=300000",
        ]
    return [*common_args, "trainer=gpu"]


def prepare(args: argparse.Namespace, cache: Path) -> Any:
    """The prepared corpus exactly as `trainpipe train` builds it (and caches it for the runs)."""
    from trainpipe.config.compose import compose
    from trainpipe.config.validate import validate
    from trainpipe.tasks import get_task

    conf = validate(compose("train", overrides(args, cache)), "train")
    return conf, get_task("lm").prepare(conf)


def run_trainpipe(args: argparse.Namespace, cache: Path, wd: Path, compiled: bool) -> Result:
    run = [
        *overrides(args, cache),
        f"model.compile={str(compiled).lower()}",
        f"trainer.max_steps={args.steps}",
        "trainer.limit_val_batches=0",
        "test_after_fit=false",
        "registry.register=false",
        "model.samples.max_new_tokens=0",
    ]
    summary, _ = common.run_trainpipe(run, wd, tty=True, timeout=args.timeout)
    return Result(
        tokens_per_s=summary["tokens_per_s"],
        step_time_ms=summary["step_time_ms_mean"],
        first_step_s=summary.get("first_step_s"),
        peak_mem_gib=summary.get("gpu_mem_peak_gib"),
        mfu=summary.get("mfu"),
    )


def plain_loop(
    args: argparse.Namespace, conf: dict[str, Any], prepared: Any, compiled: bool
) -> Result:
    """The hand-written loop (see the module docstring); a fresh model and optimizer per call."""
    import numpy as np
    import torch

    from trainpipe.callbacks.clocks import EventClock, HostClock
    from trainpipe.optim import warmup_cosine
    from trainpipe.perf import peaks
    from trainpipe.tasks.lm.gpt import GPT, GPTConfig

    cuda = not args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.set_float32_matmul_precision("high")
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(42)
    shape = TINY if args.tiny else GPT2
    model = GPT(GPTConfig(vocab_size=prepared.vocab_size, **shape)).to(device)
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": matrices}, {"params": vectors, "weight_decay": 0.0}],
        lr=6e-4,
        betas=(0.9, 0.95),
        weight_decay=0.1,
        fused=cuda or None,
    )
    warmup = conf["model"]["scheduler"]["warmup_steps"]
    scheduler = warmup_cosine(optimizer, total_steps=args.steps, warmup_steps=warmup)
    loss_fn = torch.compile(model.loss) if compiled else model.loss
    seq = shape["seq_len"]
    tokens = torch.from_numpy(np.asarray(prepared.splits["train"]).astype(np.int32)).to(device)
    span = torch.arange(seq + 1, device=device)
    rng = np.random.default_rng(0)
    clock = EventClock() if cuda else HostClock()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)
    marks, first_step_s, started = [], None, time.perf_counter()
    for step in range(args.steps):
        starts = rng.integers(0, len(tokens) - seq - 1, size=args.batch)
        rows = torch.tensor(starts, pin_memory=cuda).to(device, non_blocking=True)
        batch = tokens[rows[:, None] + span].long()
        with autocast:
            loss = loss_fn(batch[:, :-1], batch[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        if step == 0:
            if cuda:
                torch.cuda.synchronize(device)
            first_step_s = time.perf_counter() - started
        marks.append(clock.mark())
    clock.wait(marks[-1])
    seconds = clock.seconds(marks[WARMUP_STEPS], marks[-1])
    steps = len(marks) - 1 - WARMUP_STEPS
    tokens_per_s = steps * args.batch * seq / seconds
    peak = peaks.peak_tflops(torch.cuda.get_device_name(device), "bf16-mixed") if cuda else None
    return Result(
        tokens_per_s=tokens_per_s,
        step_time_ms=1000 * seconds / steps,
        first_step_s=first_step_s,
        peak_mem_gib=torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
        mfu=tokens_per_s * model.flops_per_token() / (peak * 1e12) if peak else None,
    )


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def rows_for(mode: str, ours: list[Result], base: list[Result]) -> list[dict[str, str]]:
    """The table rows of one mode (eager or compiled): medians over the rounds."""
    ratios = [a.tokens_per_s / b.tokens_per_s for a, b in zip(ours, base, strict=True)]
    ratio = common.median(ratios)

    def med(results: list[Result], field: str) -> float | None:
        values = [getattr(r, field) for r in results if getattr(r, field) is not None]
        return common.median(values) if values else None

    rows = [
        {
            "what": f"{mode}: tokens/s",
            "trainpipe": _fmt(med(ours, "tokens_per_s"), ",.0f"),
            "baseline": _fmt(med(base, "tokens_per_s"), ",.0f") + " (plain loop)",
            "ratio": f"{ratio:.3f}x (rounds {common.spread(ratios)})",
            "goal": f">= {GOAL:.2f}x",
            "status": common.verdict(ratio >= GOAL, ratios, GOAL),
        }
    ]
    for field, label, spec, unit in (
        ("mfu", "MFU", ".1%", ""),
        ("step_time_ms", "ms/step", ".1f", " ms"),
        ("first_step_s", "first step (compile included)", ".1f", " s"),
        ("peak_mem_gib", "peak memory", ".2f", " GiB"),
    ):
        a, b = med(ours, field), med(base, field)
        rows.append(
            {
                "what": f"{mode}: {label}",
                "trainpipe": _fmt(a, spec, unit),
                "baseline": _fmt(b, spec, unit),
                "ratio": f"{a / b:.3f}x" if a and b else "-",
                "goal": "info",
                "status": "-",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions (median)")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per run")
    parser.add_argument("--batch", type=int, default=None, help="sequences per step (16; 4 tiny)")
    parser.add_argument("--modes", default=None, help="eager,compiled (default; eager with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="a tiny GPT on the CPU: smoke test")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per trainpipe run")
    parser.add_argument(
        "--cache", type=Path, default=None, help="data cache dir to keep (default: a temp dir)"
    )
    common.add_threads_arg(parser)
    args = parser.parse_args()
    args.batch = args.batch or (4 if args.tiny else 16)
    # one torch thread on the CPU: two threads on a busy 2-core machine run 10-30x slower
    common.apply_threads(args.threads or (1 if args.tiny else None))
    modes = (args.modes or ("eager" if args.tiny else "eager,compiled")).split(",")
    if args.steps <= WARMUP_STEPS + 1:
        parser.error(f"--steps must be > {WARMUP_STEPS + 1}")
    import torch

    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU, or pass --tiny for the CPU smoke test")
    device = "CPU (--tiny)" if args.tiny else torch.cuda.get_device_name(0)
    common.print_header(
        "GPT-2 124M on one GPU: trainpipe train vs a plain PyTorch loop",
        f"{device}, torch {torch.__version__}; batch {args.batch}, {args.steps} steps per run "
        f"({WARMUP_STEPS} warm-up left out), {args.rounds} interleaved round(s), modes {modes}",
    )
    ours: dict[str, list[Result]] = {m: [] for m in modes}
    base: dict[str, list[Result]] = {m: [] for m in modes}

    def report() -> list[dict[str, str]]:
        """The table so far; with --out also written as JSON (a killed run keeps its rounds)."""
        done = [m for m in modes if ours[m] and len(ours[m]) == len(base[m])]
        rows = [row for mode in done for row in rows_for(mode, ours[mode], base[mode])]
        if args.out:
            record = {
                "device": device,
                "torch": torch.__version__,
                "args": {k: str(v) for k, v in vars(args).items()},
                "trainpipe": {m: [asdict(r) for r in ours[m]] for m in modes},
                "plain": {m: [asdict(r) for r in base[m]] for m in modes},
                "table": rows,
            }
            args.out.write_text(json.dumps(record, indent=2))
        return rows

    with common.workdir() as wd:
        cache = args.cache or wd / "cache"
        conf, prepared = prepare(args, cache)
        print(
            f"corpus: {len(prepared.splits['train']):,} train tokens, vocab {prepared.vocab_size}"
        )
        for round_no in range(args.rounds):
            for mode in modes:
                compiled = mode == "compiled"
                ours[mode].append(run_trainpipe(args, cache, wd, compiled))
                base[mode].append(plain_loop(args, conf, prepared, compiled))
                report()
            print(f"round {round_no + 1}/{args.rounds} done", flush=True)
    print()
    common.print_table(report())
    if args.tiny:
        print("(--tiny: a CPU smoke test; these numbers say nothing about GPU speed)")


if __name__ == "__main__":
    main()
