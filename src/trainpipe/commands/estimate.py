"""`trainpipe estimate <train overrides>`: parameters, FLOPs, memory per GPU, time and cost of a
GPT training config, on paper: nothing is trained, no data is read, no GPU (or torch) is needed.

    trainpipe estimate experiment=gpt2_124m
    trainpipe estimate experiment=gpt2_124m trainer=fsdp2 trainer.devices=8 perf.gpu_hour_usd=2.5

The overrides are those of `trainpipe train`; the config is composed and validated the same way,
then mapped onto `trainpipe.perf.estimate`: the vocabulary from the tokenizer config (bytes →
257, bpe → tokenizer.vocab_size, pretrained → its tokenizer.json), the architecture from
`model.init_from`'s config.json when set, the layout from the trainer section, and the `perf.*`
keys (configs/train.yaml) for the assumed MFU, the GPU, the price and a token budget.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from typing import Any

from trainpipe.errors import USER_ERROR_EXIT_CODE, ConfigError, UserError

DEFAULT_DEVICE = "NVIDIA H100 80GB HBM3"  # H100 SXM, when no GPU is visible and none is named
SHARDING_OFF = ("NO_SHARD",)


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trainpipe estimate", description=__doc__.split("\n")[0])
    parser.add_argument(
        "overrides", nargs="*", help="train config overrides (key=value, group=option)"
    )
    parser.add_argument("--config-dir", default=None, help="an extra config dir, as for train")
    parsed = parser.parse_args(args)
    try:
        text = describe(parsed.overrides, parsed.config_dir)
    except UserError as err:
        print(f"trainpipe: {err}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    print(text)
    return 0


def describe(overrides: list[str], config_dir: str | None = None) -> str:
    """The printed estimate for `trainpipe train <overrides>`."""
    from trainpipe.config.compose import compose
    from trainpipe.config.validate import validate
    from trainpipe.perf.estimate import estimate, format_estimate
    from trainpipe.tasks import model_task
    from trainpipe.tasks.base import ESTIMATE

    conf = validate(compose("train", overrides, config_dir), "train")
    task = model_task(conf["model"])
    if task is None or ESTIMATE not in task.capabilities:
        raise ConfigError(
            "model",
            f"estimate covers GPT models (model=gpt); model is {conf['model'].get('name')!r}",
        )
    task.validate(conf)
    notes: list[str] = []
    model = task.model_shape(conf, notes)
    run = run_shape(conf, notes)
    result = estimate(model, run, assumptions(conf, run.precision, notes))
    warning = memory_warning(result.memory.total, result.assumptions.device)
    if warning:
        notes.insert(0, warning)
    title = (
        f"trainpipe estimate {' '.join(overrides)}".rstrip()
        + f"\n{round(result.parameters_total / 1e6)} M parameters (GPT, {model.n_layer} layers, "
        f"d_model {model.d_model})\n"
    )
    lines = [f"\n{'warning' if n is warning else 'note'}: {n}" for n in notes]
    return title + "\n" + format_estimate(result) + "".join(lines)


def run_shape(conf: dict[str, Any], notes: list[str]) -> Any:
    from trainpipe.perf.estimate import RunShape
    from trainpipe.runtime.launch import is_fsdp

    trainer, perf = conf["trainer"], conf["perf"]
    strategy = trainer.get("strategy")
    sharding = strategy.get("sharding_strategy") if isinstance(strategy, dict) else None
    budget = perf.get("token_budget")
    max_steps = trainer["max_steps"] if trainer["max_steps"] > 0 and budget is None else None
    return RunShape(
        micro_batch=conf["data"]["batch_size"],
        devices_per_node=devices_per_node(trainer, notes),
        nodes=trainer["num_nodes"],
        grad_accum=trainer["accumulate_grad_batches"],
        precision=str(trainer["precision"]),
        sharded=is_fsdp(strategy) and sharding not in SHARDING_OFF,
        activation_checkpointing=bool(conf["model"].get("activation_checkpointing")),
        max_steps=max_steps,
        token_budget=budget,
    )


def devices_per_node(trainer: dict[str, Any], notes: list[str]) -> int:
    devices = trainer["devices"]
    if isinstance(devices, list):
        return len(devices)
    if devices not in ("auto", -1, "-1"):
        return int(devices)
    if trainer["accelerator"] == "cpu":
        return 1
    count = len(visible_gpus())
    notes.append(f"trainer.devices={devices}: {count or 1} GPU(s) per node assumed")
    return max(count, 1)


def visible_gpus() -> list[str]:
    """Names of this machine's GPUs from nvidia-smi (empty without one); torch is not imported."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def memory_warning(memory_bytes: float, device: str | None) -> str | None:
    """A line when the estimated memory per device exceeds what `device` has (None if it fits,
    or the device's memory is unknown): the run would stop with out-of-memory."""
    from trainpipe.perf.peaks import device_memory_gib

    capacity = device_memory_gib(device) if device else None
    needed = memory_bytes / 2**30
    if capacity is None or needed <= capacity:
        return None
    return (
        f"the estimated memory per device, {needed:.1f} GiB, exceeds the {capacity:g} GiB of "
        f"{device}: lower data.batch_size (raise trainer.accumulate_grad_batches to keep the "
        "batch), or turn on model.activation_checkpointing or trainer=fsdp2"
    )


def assumptions(conf: dict[str, Any], precision: str, notes: list[str]) -> Any:
    from trainpipe.perf.estimate import Assumptions
    from trainpipe.perf.peaks import device_peaks, known_devices

    perf = conf["perf"]
    device = perf.get("device")
    if device is None and perf.get("peak_tflops") is None:
        gpus = visible_gpus()
        device = gpus[0] if gpus else DEFAULT_DEVICE
        notes.append(f"GPU: {device} ({'visible' if gpus else 'assumed'}; set perf.device)")
    if perf.get("peak_tflops") is None and device_peaks(device) is None:
        raise ConfigError(
            "perf.device",
            f"no peak TFLOP/s known for {device!r}: set perf.peak_tflops=<dense TFLOP/s of one "
            f"device>, or perf.device to one of {', '.join(known_devices())}",
        )
    return Assumptions(
        mfu=perf["assumed_mfu"],
        peak_tflops=perf.get("peak_tflops"),
        device=device,
        tf32=precision in ("32", "32-true"),  # trainpipe turns TF32 on for CUDA (assemble.py)
        gpu_hour_usd=perf.get("gpu_hour_usd"),
    )
