"""Images/s of `trainpipe train experiment=digits_images` vs a plain torchvision loop.

Both train the same net (trainpipe's ResNet-18 with the small stem, built from the same spec)
on the digits pictures (1,797 32x32 PNG files in class folders, written by the digits_images
source) at 16x16, batch 64, AdamW with the experiment's lr, the same augmentation (a random
resized crop of scale 0.7-1), and the same number of DataLoader workers. The baseline is the
textbook loop: `torchvision.datasets.ImageFolder` decoding each PNG in the workers every epoch
(v2 Resize + CenterCrop + RandomResizedCrop + ToDtype), `DataLoader(shuffle=True)`. trainpipe
serves the decoded, resized cache (`datasets`) and augments in its workers.
Both are timed the same way: end of one train batch to end of the next (loading included),
without the first 5 batches and the first batch of every epoch; images/s = images / time.
The runs alternate for `--rounds` rounds; the ratio is the median of the per-round ratios.

    python benchmarks/images.py [--rounds 2] [--epochs 2] [--workers 2] [--threads N]
    python benchmarks/images.py --gpu --workers 8   # on one GPU (not run yet: no GPU so far)

`--gpu`: ResNet-18 on the pictures at 32x32 without the stem's max-pool (the CIFAR ResNet),
`trainer=gpu` (bf16-mixed, channels_last, compiled, fused AdamW) against the plain loop with the
same settings (autocast bf16, channels_last, `torch.compile`, fused AdamW, pinned memory); also
reports trainpipe's `data_wait_frac` (goal < 0.05: data never the bottleneck).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import common

GOAL = 0.90  # trainpipe's images/s over the plain loop's (CPU)
GPU_GOAL, GPU_SIZE = 0.95, 32
BATCH, SIZE, LR, WEIGHT_DECAY, CROP_SCALE = 64, 16, 0.003, 0.0001, 0.7  # experiment/digits_images


def prepare(cache: Path, workers: int, size: int) -> tuple[Any, Path]:
    """The digits pictures as `trainpipe train experiment=digits_images` prepares them, and the
    folder of PNG files they were read from."""
    from trainpipe.config.compose import compose
    from trainpipe.config.validate import validate
    from trainpipe.tasks.images import TASK
    from trainpipe.tasks.images.sources import DIGITS_IMAGES_VERSION

    overrides = ["experiment=digits_images", f"paths.cache_dir={cache}"]
    overrides += [f"data.num_workers={workers}", f"data.image_size={size}"]
    conf = validate(compose("train", overrides), "train")
    return TASK.prepare(conf), cache / "sources" / DIGITS_IMAGES_VERSION


def plain_loop(
    prepared: Any, folder: Path, epochs: int, workers: int, gpu: bool = False
) -> tuple[list[float], list[int]]:
    """The torchvision loop; (step seconds, images per step) of the timed steps."""
    import torch
    import torch.nn.functional as F
    import torchvision
    from torchvision.transforms import v2

    from trainpipe.tasks.images import TASK
    from trainpipe.tasks.images.model import build_net

    torch.manual_seed(42)
    transform = v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize(prepared.image_size, antialias=True),
            v2.CenterCrop(prepared.image_size),
            v2.RandomResizedCrop(prepared.image_size, scale=(CROP_SCALE, 1.0), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=transform)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=BATCH,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=gpu,
        generator=torch.Generator().manual_seed(42),
    )
    spec = {**TASK.data_spec(prepared), "name": "resnet"}
    spec["net"] = {"depth": 18, "small_stem": True, "stem_pool": not gpu}
    model = build_net(spec).train()
    device = torch.device("cuda" if gpu else "cpu")
    if gpu:
        model = model.to(device, memory_format=torch.channels_last)
        model.channels_last = True
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, **({"fused": True} if gpu else {})
    )
    forward = torch.compile(model) if gpu else model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=gpu)
    steps, sizes, seen = [], [], 0
    for _ in range(epochs):
        previous = None
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with autocast:
                loss = F.cross_entropy(forward(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if gpu:
                torch.cuda.synchronize()  # the step's end, as trainpipe's monitor times it
            now = time.perf_counter()
            seen += 1
            if previous is not None and seen > 5:
                steps.append(now - previous)
                sizes.append(len(labels))
            previous = now
    return steps, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternating repetitions")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (23 steps each)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of both")
    parser.add_argument("--gpu", action="store_true", help="on one CUDA GPU, 32x32, bf16, compiled")
    common.add_threads_arg(parser)
    args = parser.parse_args()
    size, goal = (GPU_SIZE, GPU_GOAL) if args.gpu else (SIZE, GOAL)
    common.apply_threads(args.threads)
    watch = common.CpuWatch()
    common.print_header(
        "images: trainpipe train experiment=digits_images vs a plain torchvision loop",
        f"ResNet-18 (small stem), digits PNGs at {size}x{size}, batch {BATCH}, {args.workers} "
        f"workers, {args.epochs} epochs per run, {args.rounds} alternating rounds",
    )
    ours, theirs, waits = [], [], []
    with common.workdir() as wd:
        cache = wd / "cache"
        prepared, folder = prepare(cache, args.workers, size)
        for round_no in range(args.rounds):
            run_args = [
                "experiment=digits_images",
                f"trainer.max_epochs={args.epochs}",
                f"data.num_workers={args.workers}",
                "trainer.enable_progress_bar=false",
                "callbacks.early_stopping.patience=1000",
                "registry.register=false",
                "test_after_fit=false",
                f"paths.cache_dir={cache}",
                f"data.image_size={size}",
            ]
            if args.gpu:
                run_args += ["trainer=gpu", "model.stem_pool=false"]
            summary, _ = common.quiet(lambda a=run_args: common.run_trainpipe(a, wd))
            ours.append(summary["samples_per_s"])
            waits.append(summary["data_wait_frac"] or 0.0)
            steps, sizes = common.quiet(
                lambda: plain_loop(prepared, folder, args.epochs, args.workers, args.gpu)
            )
            theirs.append(sum(sizes) / sum(steps))
            print(f"round {round_no + 1}/{args.rounds} done", flush=True)
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    ratio = common.median(ratios)
    common.print_table(
        [
            {
                "what": f"digits_images, ResNet-18, {'GPU bf16 compiled' if args.gpu else 'CPU'}",
                "trainpipe": f"{common.median(ours):.0f} images/s",
                "baseline": f"{common.median(theirs):.0f} images/s (ImageFolder loop)",
                "ratio": f"{ratio:.2f}x (rounds {common.spread(ratios)})",
                "goal": f">= {goal:.2f}x",
                "status": common.verdict(ratio >= goal, ratios, goal),
            }
        ]
    )
    print(
        "per round, images/s: trainpipe "
        + ", ".join(f"{v:.0f}" for v in ours)
        + "; plain "
        + ", ".join(f"{v:.0f}" for v in theirs)
    )
    print(f"trainpipe data_wait_frac (median): {common.median(waits):.3f} (GPU goal < 0.05)")
    print(f"{common.repeats_note()}; {watch.report()}")


if __name__ == "__main__":
    main()
