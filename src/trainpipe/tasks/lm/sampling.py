"""What shows a language model is learning, beside its loss curve: a sample of generated text after
every validation (`samples/step-<N>.txt`, logged to MLflow), and the unigram baseline — the loss
of a model that only knows token frequencies — logged once as `baseline/unigram_loss`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from trainpipe.runtime.atomic import atomic_write_text


class SampleWriter(Callback):
    def __init__(
        self,
        directory: Path,
        tracker: Any,
        prompt: str = "",
        max_new_tokens: int = 200,
        temperature: float = 0.8,
        top_k: int = 0,
        seed: int = 0,
    ) -> None:
        self.directory = Path(directory)
        self.tracker = tracker
        self.options = {
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_k": top_k,
            "seed": seed,
        }
        self.prompt = prompt
        self._tokenizer: Any = None

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or not self.options["max_new_tokens"]:
            return
        # every rank generates (the same tokens: same weights, prompt and seed), because a
        # sharded model's forward needs all of them; rank 0 alone writes the sample
        from trainpipe.tasks.lm.predictor import LanguagePredictor
        from trainpipe.tasks.lm.tokenizer_files import load_files_tokenizer

        if self._tokenizer is None:
            self._tokenizer = load_files_tokenizer(pl_module.spec)
        # validation has the model in eval mode already; Lightning restores train mode after it
        predictor = LanguagePredictor(pl_module.spec, pl_module.model, self._tokenizer)
        text = predictor.continue_text(self.prompt, **self.options)
        if not trainer.is_global_zero:
            return
        path = atomic_write_text(
            self.directory / f"step-{trainer.global_step:08d}.txt", self.prompt + text
        )
        self.tracker.log_artifact(path, "samples")


class UnigramBaseline(Callback):
    """Log the train split's unigram entropy (nats/token) once, to read val/loss against."""

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero and trainer.logger is not None:
            value = float(pl_module.spec["unigram_entropy"])
            trainer.logger.log_metrics({"baseline/unigram_loss": value}, step=trainer.global_step)
