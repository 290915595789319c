"""The GPU paths as far as a CPU runs them: the GPT benchmark's smoke mode, and a real
`trainpipe train` of a GPT whose training steps read nothing back from the device between log
windows except in the callback listed in KNOWN_PER_STEP (see docs/gpu.md).

What needs a GPU (CUDA events, NCCL, bf16 autocast, fused AdamW, torch.compile with inductor,
the MFU peak table, NVML system metrics) is checked by scripts/gpu_check.sh on a GPU machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env, run_cli

pytestmark = pytest.mark.slow

# the per-step device read that remains on the CPU: the divergence guard's finiteness check of the
# loss (one `.item()` a step there; on a GPU it is read once per log window)
KNOWN_PER_STEP = {"trainpipe/callbacks/divergence.py"}
HOST_SIDE = ("torch/optim/",)  # AdamW's host-resident step counters (tests/unit/test_lm_training)


def test_gpu_benchmark_runs_its_cpu_smoke_mode(workdir: Path) -> None:
    out = workdir / "gpu_gpt.json"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/gpu_gpt.py"),
            "--tiny",
            "--rounds",
            "1",
            "--steps",
            "8",
            "--out",
            str(out),
        ],
        cwd=workdir,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "eager: tokens/s" in result.stdout
    record = json.loads(out.read_text())
    for side in ("trainpipe", "plain"):
        (run,) = record[side]["eager"]
        assert run["tokens_per_s"] > 0 and run["step_time_ms"] > 0 and run["first_step_s"] > 0


def test_a_gpt_job_reads_the_device_only_at_log_windows(workdir: Path) -> None:
    reads = workdir / "reads.json"
    counter = "tests.unit.test_lm_training.HostReadCounter"
    result = run_cli(
        [
            "train",
            "experiment=stdlib_gpt",
            "trainer=cpu",
            "data.max_bytes=200000",
            "model.n_layer=1",
            "model.d_model=32",
            "model.n_head=2",
            "model.seq_len=32",
            "trainer.max_steps=12",
            "trainer.log_every_n_steps=4",
            "trainer.val_check_interval=6",
            "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2",
            "model.samples.max_new_tokens=4",
            "checkpoint.every_n_steps=100",
            f"+callbacks.host_reads._target_={counter}",
            f"+callbacks.host_reads.path={reads}",
        ],
        cwd=workdir,
        PYTHONPATH=str(REPO),
        OMP_NUM_THREADS="1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    steps = {int(step): sites for step, sites in json.loads(reads.read_text()).items()}
    assert sorted(steps) == list(range(1, 13))
    quiet = [s for s in steps if s % 4 and s % 6]  # neither a log window nor a validation
    for step in quiet:
        sites = [site for site in steps[step] if not site.startswith(HOST_SIDE)]
        assert set(sites) <= KNOWN_PER_STEP, f"step {step} read the device at {sites}"
        assert len(sites) <= len(KNOWN_PER_STEP), f"step {step}: {sites}"
