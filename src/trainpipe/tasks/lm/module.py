"""The LightningModule of the language-modelling task: a GPT trained on next-token prediction.

Logged: `train/loss` per step; `<stage>/loss`, `<stage>/ppl` and `<stage>/bpb` (bits per byte of
text, comparable across tokenizers) per evaluation, over every window of the split. Gradient
clipping (`model.grad_clip`) happens here rather than in the Trainer, as in every task
(optim.py: `clip_gradients`): it works with a fused AdamW under mixed precision.

Speed (docs/gpu.md): nothing in a training step reads a value back to the host, so the GPU never
waits for Python: the loss stays on the device and Lightning reads it once per log window.
`compile` runs the loss through `torch.compile` (under FSDP2 or activation checkpointing each block
and the head's loss on their own: `GPT.compile_blocks`); the compiled functions are held outside the
module tree, so state dicts and checkpoints keep the plain GPT names (no `_orig_mod.`). Under
`trainer=fsdp2` (ModelParallelStrategy) `configure_model` shards each block and then the root
with FSDP2 (`fully_shard`): bf16 parameters, fp32 gradient reduction when training in bf16.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torchmetrics import MeanMetric

from trainpipe.optim import clip_gradients, with_fused_default
from trainpipe.tasks.lm.gpt import GPT, GPTConfig

EVAL_STAGES = ("val", "test")
COMPILE_CHOICES = ("auto", True, False)


def gpt_config(spec: dict[str, Any]) -> GPTConfig:
    """The model's shape from a spec (what checkpoints and packages carry)."""
    return GPTConfig(**spec["gpt"])


class LanguageModule(L.LightningModule):
    def __init__(
        self,
        spec: dict[str, Any],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        grad_clip: float | None = 1.0,
        model: GPT | None = None,
        compile: bool | str = False,
        compile_backend: str = "inductor",
    ) -> None:
        super().__init__()
        if compile not in COMPILE_CHOICES:
            raise ValueError(f"compile must be auto, true or false, got {compile!r}")
        self.spec = spec
        # `model`: weights to start from (`model.init_from`); else GPT-2's initialisation
        self.model = model if model is not None else GPT(gpt_config(spec))
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.grad_clip = grad_clip
        self.compile_setting = compile  # auto: on when training on a CUDA device
        self.compile_backend = compile_backend  # tests use "aot_eager": no C++ toolchain run
        # "disable": no NaN check, which would read every batch's loss back to the host
        self.eval_loss = torch.nn.ModuleDict(
            {stage: MeanMetric(nan_strategy="disable") for stage in EVAL_STAGES}
        )
        # not submodules: a compiled function and gathered weights stay out of state dicts
        self._loss: Callable[[Tensor, Tensor], Tensor] = self.model.loss
        self._configured = False
        self._gathered: dict[str, Tensor] | None = None

    # -- what the throughput monitor reads (callbacks/throughput.py) -------------------------
    @property
    def flops_per_token(self) -> float:
        return self.model.flops_per_token()

    def tokens_in_batch(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        return batch[0].numel()  # from the shape: no device sync

    # -- placement: sharding and compilation ---------------------------------------------
    def configure_model(self) -> None:
        """Shard (FSDP2, when the strategy made a device mesh) and compile, once per module.

        Lightning calls this before every fit/test with the strategy set up but the weights not
        yet on the device; sharding must happen here (ModelParallelStrategy requires it).
        """
        if self._configured:
            return
        self._configured = True
        if self.sharded():
            shard(self.model, self._device_mesh["data_parallel"], self._bf16())
        # read after sharding: FSDP2 replaces `loss` with a version that gathers the weights
        self._loss = self.model.loss
        if not self.compile_enabled():
            return
        if self.sharded() or self.model.config.activation_checkpointing:
            # one graph per block and one for the head and loss: FSDP2's hooks and a
            # checkpoint would otherwise break the whole-model graph (see GPT.compile_blocks)
            self.model.compile_blocks(self.compile_backend)
            self.model.cross_entropy = torch.compile(
                self.model.cross_entropy, backend=self.compile_backend
            )
        else:
            self._loss = torch.compile(self._loss, backend=self.compile_backend)

    def compile_enabled(self) -> bool:
        """`compile: auto` compiles on CUDA devices only (on CPU compiling costs minutes)."""
        if self.compile_setting != "auto":
            return bool(self.compile_setting)
        trainer = self._trainer
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def _bf16(self) -> bool:
        trainer = self._trainer
        return trainer is not None and str(trainer.precision).startswith("bf16")

    def sharded(self) -> bool:
        """Whether the strategy made a device mesh (trainer=fsdp2), so the GPT is FSDP2-sharded."""
        return getattr(self, "_device_mesh", None) is not None

    # -- steps ---------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Any:
        inputs, targets = batch
        loss = self._loss(inputs, targets)
        # not prog_bar: Lightning copies every prog_bar value to the host after each batch, a
        # device sync per step; the progress bar (callbacks/progress.py) shows it per log window
        self.log("train/loss", loss, on_step=True, batch_size=inputs.size(0))
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        inputs, targets = batch
        # every window has seq_len tokens, so a mean over windows is a mean over tokens; the
        # weight is made on the device (a Python number would be copied there, waiting for it)
        weight = torch.full((), float(inputs.size(0)), device=inputs.device)
        self.eval_loss[stage].update(self._loss(inputs, targets), weight=weight)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _log_eval(self, stage: str) -> None:
        loss = self.eval_loss[stage].compute()  # reduced over every rank's windows
        self.eval_loss[stage].reset()
        for name, value in eval_metrics(float(loss), self.spec["bytes_per_token"][stage]).items():
            self.log(f"{stage}/{name}", value, sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def on_test_end(self) -> None:
        # the tested (best) weights, gathered while every rank is here: rank 0 packages them
        if self.sharded():
            self._gathered = gather_full_state(self.model)

    # -- optimisation --------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        # weight decay on matrices only: biases and LayerNorm gains are left alone
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        factory = with_fused_default(self.optimizer_factory, decay[0].device)
        optimizer = factory(params=[{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])
        if self.scheduler_factory is None:
            return optimizer
        factory = self.scheduler_factory
        if getattr(factory, "keywords", {}).get("total_steps") == -1:
            # trainer.max_steps unset: the run is max_epochs × steps per epoch, as Lightning counts
            steps = int(self.trainer.estimated_stepping_batches)
            factory = functools.partial(factory, total_steps=steps)
        scheduler = factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        # unscaled first under 16-mixed, FSDP1's global norm, no device read (optim.py)
        clip_gradients(self, optimizer, self.grad_clip)

    # -- weights for packages and exports ------------------------------------------------
    def portable_state_dict(self) -> dict[str, Tensor]:
        """The GPT's weights as plain CPU tensors (GPT names, tied head included).

        Sharded: the weights gathered after testing (or handed to `load_state_dict` as a full
        state dict); gathering needs every rank, so it cannot happen on rank 0 alone here.
        """
        if self._gathered is not None:
            return self._gathered
        if self.sharded():
            raise RuntimeError(
                "the sharded weights were not gathered: run the test stage (test_after_fit) or "
                "load a full state dict first"
            )
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        if self.sharded() and not _has_dtensors(state_dict):
            # a full state dict read on one rank after training (to package the best weights):
            # it cannot be scattered without the other ranks, so it is kept for the package
            prefix = "model."
            self._gathered = {
                k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)
            }
            return torch.nn.modules.module._IncompatibleKeys([], [])
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # what `trainpipe eval`, `generate`, `export` and the registry need to rebuild the model
        checkpoint["trainpipe_model"] = self.spec


def shard(model: GPT, mesh: Any, bf16: bool) -> None:
    """FSDP2 over `mesh`: one unit per transformer block, the rest (embeddings, final LayerNorm,
    the tied head) in the root unit. In bf16 the gathered parameters are bf16 and gradients are
    reduced in fp32; the sharded master weights and optimizer state stay fp32."""
    from torch.distributed.fsdp import (
        MixedPrecisionPolicy,
        fully_shard,
        register_fsdp_forward_method,
    )

    policy = MixedPrecisionPolicy()
    if bf16:
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in model.h:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    # training calls GPT.loss, not forward: FSDP2's gather/free hooks must run around it too
    register_fsdp_forward_method(model, "loss")


def gather_full_state(model: torch.nn.Module) -> dict[str, Tensor]:
    """The full weights of a sharded model on rank 0's CPU (every rank must call it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def _has_dtensors(state_dict: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(v, DTensor) for v in state_dict.values())


def eval_metrics(loss: float, bytes_per_token: float) -> dict[str, float]:
    """loss (nats/token), perplexity, and bits per byte of the underlying text."""
    return {
        "loss": loss,
        "ppl": math.exp(min(loss, 50.0)),
        "bpb": loss / math.log(2) / bytes_per_token,
    }
