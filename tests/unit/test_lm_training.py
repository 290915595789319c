"""The GPT module's training loop without host syncs: the logged losses are each logged step's own
loss (as before), nothing reads a device value back between log windows, a compiled module saves
plain GPT names, and AdamW is fused on CUDA unless the config says otherwise."""

from __future__ import annotations

import functools
import json
import traceback
from pathlib import Path
from typing import Any

import lightning
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils._python_dispatch import TorchDispatchMode

from tests.unit.test_lm_task import lm_plan
from tests.unit.test_throughput import MemoryLogger
from trainpipe.callbacks.gpu_metrics import FIELDS, GpuSystemMetrics
from trainpipe.callbacks.progress import TimedProgressBar
from trainpipe.callbacks.throughput import ThroughputMonitor
from trainpipe.optim import with_fused_default

STEPS, EVERY = 12, 4
aten = torch.ops.aten
# a value copied from the device to the host (item/float/int/bool, torch.equal, nonzero's size)
HOST_READS = {aten._local_scalar_dense.default, aten.equal.default, aten.nonzero.default}


class HostReads(TorchDispatchMode):
    """Records where each device→host read happens (the innermost trainpipe or Lightning frame)."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in HOST_READS:
            self.sites.append(_site())
        return func(*args, **(kwargs or {}))


def _site() -> str:
    """The innermost frame of trainpipe, Lightning or torch, as `package/path/file.py` (torch's
    call wrappers skipped: they only pass the call on)."""
    for frame in reversed(traceback.extract_stack()):
        if "test_lm_training" in frame.filename or any(w in frame.filename for w in WRAPPERS):
            continue
        for marker in ("/src/trainpipe/", "/lightning/", "/torch/"):
            if marker in frame.filename:
                return f"{marker.strip('/').split('/')[-1]}/{frame.filename.split(marker, 1)[1]}"
    return "elsewhere"


WRAPPERS = ("torch/_dynamo/", "torch/_compile.py", "torch/utils/_python_dispatch.py")
# torch's non-fused AdamW reads its per-parameter step counters, which live on the host (on CUDA
# too, unless fused/capturable): no device sync. On CUDA trainpipe uses the fused kernel.
HOST_SIDE = ("torch/optim/",)


class HostReadCounter(Callback):
    """Host reads per optimizer step of the fit (from one batch start to the next), by site.

    Usable from the CLI too: `+callbacks.host_reads={_target_: tests.unit.test_lm_training.
    HostReadCounter, path: reads.json}` writes {global step: [sites]} when training ends (each
    rank of a multi-process job to its own file: reads.rank<N>.json).
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.mode = HostReads()
        self.steps: dict[int, list[str]] = {}
        self._mark, self._step = 0, -1

    def _close(self) -> None:
        if self._step >= 0:
            self.steps.setdefault(self._step, []).extend(self.mode.sites[self._mark :])
        self._mark = len(self.mode.sites)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.mode.__enter__()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, idx: int) -> None:
        self._close()
        self._step = trainer.global_step + 1  # the optimizer step this batch belongs to

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._close()
        self.mode.__exit__(None, None, None)
        if self.path:
            path = Path(self.path)
            if trainer.world_size > 1:
                path = path.with_suffix(f".rank{trainer.global_rank}{path.suffix}")
            path.write_text(json.dumps(self.steps))


def tiny_lm(tmp_path: Path, *overrides: str) -> tuple[Any, Any, Any]:
    """(module, train loader, prepared) of a 1-layer GPT on a small text file."""
    task, cfg, conf, prepared = lm_plan(tmp_path, f"trainer.max_steps={STEPS}", *overrides)
    lightning.seed_everything(0, workers=True, verbose=False)
    module = task.build_module(cfg.model, task.data_spec(prepared))
    loader = task.datamodule(prepared, conf["data"]).make_loader("train", True, 0, 1)
    return module, loader, prepared


def cpu_trainer(tmp_path: Path, **options: Any) -> lightning.Trainer:
    """A quiet one-process CPU Trainer that trains without validating; `options` override."""
    quiet = dict(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    return lightning.Trainer(**{**quiet, **options})


def fit(module: Any, loader: Any, tmp_path: Path, callbacks: list[Any]) -> MemoryLogger:
    logger = MemoryLogger()
    trainer = cpu_trainer(
        tmp_path,
        max_steps=STEPS,
        log_every_n_steps=EVERY,
        logger=logger,
        callbacks=callbacks,
        enable_progress_bar=True,
    )
    trainer.fit(module, loader)
    return logger


def test_logged_train_loss_is_the_loss_of_each_logged_step(tmp_path: Path) -> None:
    module, loader, _ = tiny_lm(tmp_path)
    reference = {k: v.clone() for k, v in module.model.state_dict().items()}
    logged = fit(module, loader, tmp_path, []).series("train/loss")
    # Lightning's step axis counts the optimizer steps taken before the logged batch's own
    assert sorted(logged) == list(range(EVERY - 1, STEPS, EVERY))

    # the same training by hand, from the same weights and batches: what was logged before
    module.model.load_state_dict(reference)
    optimizer = module.configure_optimizers()
    scheduler = optimizer["lr_scheduler"]["scheduler"]
    losses = []
    for inputs, targets in loader:
        loss = module.model.loss(inputs, targets)
        losses.append(loss.item())
        optimizer["optimizer"].zero_grad()
        loss.backward()
        module.configure_gradient_clipping(optimizer["optimizer"])
        optimizer["optimizer"].step()
        scheduler.step()
        if len(losses) == STEPS:
            break
    for step, value in logged.items():
        assert value == pytest.approx(losses[step], rel=1e-5), step


def test_nothing_reads_the_device_between_log_windows(tmp_path: Path) -> None:
    """The module, data, progress bar, throughput and GPU-metrics callbacks: reads happen only at
    log windows (where the loggers copy the metrics out anyway), never in the steps between."""
    module, loader, _ = tiny_lm(tmp_path)
    counter = HostReadCounter()
    gpu = GpuSystemMetrics(interval_s=0.01, reader=lambda: dict.fromkeys(FIELDS, 1.0))
    callbacks = [ThroughputMonitor(warmup_steps=2), TimedProgressBar(refresh_s=0.001), gpu]
    logger = fit(module, loader, tmp_path, [*callbacks, counter])
    assert len(logger.series("train/loss")) == STEPS // EVERY
    assert "system/gpu_0_power_usage_watts" in logger.calls[-1][1]
    for step, all_sites in counter.steps.items():
        sites = [site for site in all_sites if not site.startswith(HOST_SIDE)]
        if step % EVERY:
            assert sites == [], f"step {step} read the device at {sites}"
        else:
            assert len(sites) <= 16, f"log window of step {step}: {sites}"


def test_a_compiled_module_trains_like_eager_and_saves_plain_gpt_names(tmp_path: Path) -> None:
    module, loader, _ = tiny_lm(tmp_path, "model.compile=true")
    assert module.compile_setting is True
    module.compile_backend = "aot_eager"  # the graph capture without a C++ toolchain run
    eager, _, _ = tiny_lm(tmp_path, "model.compile=false")
    eager.model.load_state_dict(module.model.state_dict())
    trainer = cpu_trainer(tmp_path, max_steps=3, enable_checkpointing=True)
    trainer.fit(module, loader)
    assert module._loss is not module.model.loss  # compiled, and held outside the module tree
    trainer.save_checkpoint(tmp_path / "c.ckpt")
    names = torch.load(tmp_path / "c.ckpt", weights_only=True)["state_dict"]
    assert names and not [n for n in names if "_orig_mod" in n]
    assert set(module.state_dict()) == set(eager.state_dict())
    inputs, targets = next(iter(loader))
    with torch.no_grad():
        eager.model.load_state_dict(module.model.state_dict())
        assert module._loss(inputs, targets).item() == pytest.approx(
            eager.model.loss(inputs, targets).item(), rel=1e-5
        )


def test_compile_auto_is_off_on_the_cpu(tmp_path: Path) -> None:
    module, loader, _ = tiny_lm(tmp_path)
    assert module.compile_setting == "auto"
    fit(module, loader, tmp_path, [])
    assert not module.compile_enabled() and module._loss == module.model.loss


def test_adamw_is_fused_on_cuda_unless_the_config_decides() -> None:
    factory = functools.partial(torch.optim.AdamW, lr=1e-3, fused=None)
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert with_fused_default(factory, cuda).keywords["fused"] is True
    assert with_fused_default(factory, cpu) is factory
    explicit = functools.partial(torch.optim.AdamW, fused=False)
    assert with_fused_default(explicit, cuda) is explicit
    foreach = functools.partial(torch.optim.AdamW, foreach=True)
    assert with_fused_default(foreach, cuda) is foreach
    no_fused_kernel = functools.partial(torch.optim.LBFGS, lr=0.1)
    assert with_fused_default(no_fused_kernel, cuda) is no_fused_kernel


@pytest.mark.slow  # ~13 s: compiles (aot_eager) and trains two epochs
def test_a_compiled_gpt_never_recompiles_over_two_epochs(tmp_path: Path) -> None:
    """The epoch's smaller last batch is dropped (issue 20, item 2): one training graph, reused by
    every step of both epochs, never replaced by a dynamic-shape one."""
    module, loader, _ = tiny_lm(tmp_path, "model.compile=true", "data.batch_size=100")
    module.compile_backend = "aot_eager"
    per_epoch = len(loader)
    windows = loader.batch_sampler.num_rows
    assert windows % 100, "the split must leave a partial batch for this test to mean anything"
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    trainer = cpu_trainer(tmp_path, max_epochs=2)
    trainer.fit(module, loader)
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    assert trainer.global_step == 2 * per_epoch == 2 * (windows // 100)


def compiled_fsdp2_counts(tmp_path: Path, checkpointing: bool) -> dict[str, int]:
    """Dynamo's counts for 3 steps of a 2-block GPT, compiled, under trainer=fsdp2's strategy
    (gloo, world size 1, in this process)."""
    from trainpipe.runtime.checkpoint_io import FSDP2Strategy
    from trainpipe.tasks.lm.module import LanguageModule

    gpt = {"vocab_size": 64, "seq_len": 8, "n_layer": 2, "n_head": 2, "d_model": 16}
    spec = {"gpt": {**gpt, "activation_checkpointing": checkpointing}}
    optimizer = functools.partial(torch.optim.AdamW, lr=1e-3)
    module = LanguageModule(spec, optimizer, compile=True, compile_backend="aot_eager")
    rows = torch.randint(0, 64, (3, 4, 9), generator=torch.Generator().manual_seed(0))
    batches = torch.utils.data.DataLoader([(r[:, :-1], r[:, 1:]) for r in rows], batch_size=None)
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    cpu_trainer(
        tmp_path,
        devices=1,
        strategy=FSDP2Strategy(save_distributed_checkpoint=False),
        max_steps=3,
    ).fit(module, batches)
    assert module.sharded()
    return {**counters["stats"], "graph_breaks": sum(counters["graph_break"].values())}


@pytest.mark.slow  # ~40 s: two compiled FSDP2 fits
def test_activation_checkpointing_under_fsdp2_compiles_every_block(tmp_path: Path) -> None:
    """Issue 20, item 3: with checkpointing the blocks are compiled as without it (one graph per
    block, shared by the blocks, and one for the head and loss), not left eager."""
    plain = compiled_fsdp2_counts(tmp_path / "plain", checkpointing=False)
    checkpointed = compiled_fsdp2_counts(tmp_path / "checkpointed", checkpointing=True)
    assert checkpointed == plain
    assert plain["unique_graphs"] == 2 and plain["graph_breaks"] == 0, plain


def test_fsdp2_evaluates_under_no_grad_on_every_backend() -> None:
    """Issue 20, item 9: Lightning picks no_grad on gloo whatever `inference_mode` says, so the
    CPU's FSDP2 tests only ever run no_grad; NCCL must run the same, not inference_mode."""
    from trainpipe.config.compose import compose
    from trainpipe.config.targets import instantiate_checked

    def built(*overrides: str) -> Any:
        cfg = compose("train", ["model=gpt", "trainer.accelerator=cpu", *overrides])
        return instantiate_checked(cfg.trainer, "trainer", logger=False)

    fsdp2 = built("trainer=fsdp2", "trainer.precision=32-true")
    assert fsdp2.validate_loop.inference_mode is False and fsdp2.test_loop.inference_mode is False
    assert built("trainer=cpu").validate_loop.inference_mode is True  # elsewhere: the faster mode
