"""Process launch (docs/architecture.md, "Launch"): torchrun's machinery is the only multi-process launcher.

- Under torchrun, Lightning sees TorchElasticEnvironment and spawns nothing; we only check that
  `trainer.devices × trainer.num_nodes` agrees with the world torchrun built.
- Without torchrun, a job asking for N > 1 processes replaces itself with
  `python -m torch.distributed.run --standalone --nproc_per_node=N -m trainpipe …` (never
  Lightning's re-execution of sys.argv, which breaks Hydra runs).
torch is imported only when a device count is really needed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from trainpipe.errors import ConfigError
from trainpipe.runtime.ranks import global_rank

GPU_ACCELERATORS = ("gpu", "cuda")


@dataclass(frozen=True)
class TorchrunWorld:
    world_size: int
    local_world_size: int
    rank: int

    @property
    def nodes(self) -> int:
        return max(self.world_size // self.local_world_size, 1)


def torchrun_world() -> TorchrunWorld | None:
    """The world torchrun set up for this process, or None outside torchrun."""
    if "LOCAL_WORLD_SIZE" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    return TorchrunWorld(
        int(os.environ["WORLD_SIZE"]),
        int(os.environ["LOCAL_WORLD_SIZE"]),
        global_rank(),
    )


def is_fsdp(strategy: Any) -> bool:
    if isinstance(strategy, dict):
        strategy = strategy.get("_target_", "")
    return "fsdp" in str(strategy or "").lower()


def torchrun_devices(trainer: dict[str, Any], world: TorchrunWorld) -> tuple[int, int]:
    """(devices, num_nodes) for Lightning under torchrun; ConfigError if the config disagrees with the world."""
    devices = trainer["devices"]
    if devices in ("auto", -1, "-1"):
        devices = world.local_world_size
    count = len(devices) if isinstance(devices, list) else int(devices)
    if count != world.local_world_size:
        raise ConfigError(
            "trainer.devices",
            f"is {trainer['devices']} but torchrun started {world.local_world_size} process(es) on this node "
            f"(--nproc_per_node); set trainer.devices={world.local_world_size} or leave it auto",
        )
    if count * trainer["num_nodes"] != world.world_size:
        raise ConfigError(
            "trainer.num_nodes",
            f"{count} device(s) x {trainer['num_nodes']} node(s) = {count * trainer['num_nodes']} processes, "
            f"but torchrun's WORLD_SIZE is {world.world_size}; set trainer.num_nodes={world.nodes}",
        )
    return count, trainer["num_nodes"]


def processes_to_start(trainer: dict[str, Any]) -> int:
    """How many processes this node needs for the trainer config (outside torchrun)."""
    devices, accelerator = trainer["devices"], trainer["accelerator"]
    if devices in (1, "1", [0]) and accelerator not in GPU_ACCELERATORS:
        return 1
    import torch

    gpus = torch.cuda.device_count()
    if accelerator in GPU_ACCELERATORS and gpus == 0:
        raise ConfigError(
            "trainer.accelerator",
            f"is {accelerator!r} but no CUDA device is visible; use trainer=cpu or trainer=ddp_cpu",
        )
    wants_gpu = accelerator in GPU_ACCELERATORS or (accelerator == "auto" and gpus > 0)
    if devices in ("auto", -1, "-1"):
        count = gpus if wants_gpu else 1
    else:
        count = len(devices) if isinstance(devices, list) else int(devices)
    if wants_gpu and count > gpus:
        raise ConfigError(
            "trainer.devices",
            f"asks for {count} GPU(s) but {gpus} are visible (CUDA_VISIBLE_DEVICES, nvidia-smi)",
        )
    if not wants_gpu and count > (os.cpu_count() or 1):
        raise ConfigError(
            "trainer.devices",
            f"asks for {count} CPU processes but this machine has {os.cpu_count()} cores",
        )
    if is_fsdp(trainer.get("strategy")) and not wants_gpu:
        raise ConfigError(
            "trainer.accelerator",
            "FSDP needs GPUs and none is visible; use trainer=ddp_cpu on the CPU",
        )
    return max(count, 1)


def relaunch_with_torchrun(nproc: int, command: str, args: list[str]) -> None:
    """Replace this process with torchrun running the same trainpipe command on `nproc` processes."""
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
    ]
    argv += ["-m", "trainpipe", command, *args]
    print(
        f"trainpipe: starting {nproc} processes: {' '.join(argv[1:])}", file=sys.stderr, flush=True
    )
    os.execv(sys.executable, argv)
