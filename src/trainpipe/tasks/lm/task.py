"""The language-modelling task behind the task interface (tasks/base.py): text → packed tokens →
a GPT → a registered generator (safetensors + JSON spec + tokenizer files, pickle-free).
Imports no torch at module level (tasks/base.py)."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path
from typing import Any

from trainpipe.errors import ConfigError, DataError
from trainpipe.packaging import (
    SPEC_FILE,
    WEIGHTS_FILE,
    ModelPackage,
    finish_package,
    write_weights_and_spec,
)
from trainpipe.tasks.base import ESTIMATE, EXPORT, GENERATE, DataDescription, Objective
from trainpipe.tasks.lm.tokenizer_files import load_files_tokenizer, tokenizer_files

PYFUNC_MODULE = "trainpipe.tasks.lm.pyfunc"
TIED = "lm_head.weight"  # the same tensor as wte.weight: stored once
# validations in a run of trainer.max_steps when trainer.val_check_interval is unset
VALIDATIONS_PER_RUN = 10
# the model config's `_target_`: the builder of a GPT (configs/model/gpt.yaml)
BUILDER = "trainpipe.tasks.lm.task.build_gpt_module"


class LanguageModelTask:
    name = "lm"
    # the gate compares bits per byte: nats per token depend on the tokenizer, so the test loss
    # of a byte-level model and a BPE model are not comparable
    objective = Objective("val/loss", "min", gate="test/bpb")
    capabilities = frozenset({GENERATE, EXPORT, ESTIMATE})
    model_builders = frozenset({BUILDER})
    # tasks/lm/module.py eval_metrics: loss (nats/token), perplexity, bits per byte
    metric_directions = {"loss": "min", "ppl": "min", "bpb": "min"}

    def validate(self, conf: dict[str, Any]) -> None:
        model, data = conf["model"], conf["data"]
        if model.get("_target_") not in self.model_builders:
            if data["kind"] == "text":
                raise ConfigError(
                    "model",
                    f"text data trains a language model: use model=gpt (model is {model.get('name')!r})",
                )
            raise ConfigError(
                "model",
                f"model={model.get('name')} is not a language model; task lm trains model=gpt",
            )
        if conf["trainer"].get("gradient_clip_val") is not None:
            raise ConfigError(
                "trainer.gradient_clip_val",
                "GPT models clip their gradients in the module (it works with fused AdamW): "
                "set model.grad_clip instead",
            )
        if model["d_model"] % model["n_head"]:
            raise ConfigError(
                "model.d_model",
                f"must be a multiple of model.n_head ({model['n_head']}), got {model['d_model']}",
            )
        if model.get("init_from"):
            positions = _pretrained_positions(model["init_from"])
            if model["seq_len"] > positions:
                raise ConfigError(
                    "model.seq_len",
                    f"is {model['seq_len']} but the init_from checkpoint has {positions} positions; "
                    f"set model.seq_len <= {positions}",
                )

    def describe_data(self, spec: dict[str, Any]) -> DataDescription:
        return DataDescription([{"name": "text", "type": "string", "required": True}])

    def prepare(self, conf: dict[str, Any]) -> Any:
        from trainpipe.data.tokens import prepare_text

        if conf["data"]["kind"] != "text":
            raise ConfigError(
                "task",
                f"task lm trains on text; data is {conf['data']['kind']} (use data=text or data=stdlib)",
            )
        return prepare_text(conf["data"], conf["tokenizer"])

    def data_spec(self, prepared: Any) -> dict[str, Any]:
        return {
            "task": self.name,
            "vocab_size": prepared.vocab_size,
            "eot_id": prepared.eot_id,
            "tokenizer": prepared.tokenizer.kind,
            "tokenizer_fingerprint": prepared.tokenizer.fingerprint,
            "bytes_per_token": prepared.bytes_per_token,
            "unigram_entropy": prepared.unigram_entropy,
            "tokenizer_files": tokenizer_files(prepared.tokenizer),
        }

    def build_module(self, model_cfg: Any, spec: dict[str, Any]) -> Any:
        if model_cfg.get("_target_") not in self.model_builders:
            raise ConfigError(
                "model",
                f"model={model_cfg.get('name')} is not a language model; task lm trains model=gpt",
            )
        return build_gpt_module(model_cfg, spec, self)

    def datamodule(self, prepared: Any, data_conf: dict[str, Any]) -> Any:
        from trainpipe.data.datamodule import PreparedDataModule
        from trainpipe.data.windows import window_loader

        loader = functools.partial(window_loader, seq_len=data_conf["seq_len"])
        return PreparedDataModule(loader, prepared.splits, data_conf)

    def callbacks(self, conf: dict[str, Any], output_dir: Path, tracker: Any) -> list[Any]:
        from trainpipe.tasks.lm.sampling import SampleWriter, UnigramBaseline

        samples = SampleWriter(output_dir / "samples", tracker, **conf["model"]["samples"])
        return [samples, UnigramBaseline()]

    def trainer_defaults(self, conf: dict[str, Any]) -> dict[str, Any]:
        """Validate by steps, not epochs: a run of max_steps often ends before its first epoch
        does (a corpus larger than max_steps × batch × seq_len tokens), and an epoch-end
        validation would then never happen. An int val_check_interval counts training batches
        across epochs (check_val_every_n_epoch off); unset, it is a tenth of the run.
        Without max_steps the run is max_epochs long and validates at every epoch end."""
        trainer = conf["trainer"]
        interval = trainer["val_check_interval"]
        if interval is None and trainer["max_steps"] > 0:
            steps = math.ceil(trainer["max_steps"] / VALIDATIONS_PER_RUN)
            interval = steps * trainer["accumulate_grad_batches"]  # Lightning counts batches
        elif not isinstance(interval, int):
            return {}
        return {"trainer.val_check_interval": interval, "trainer.check_val_every_n_epoch": None}

    def write_package(self, module: Any, prepared: Any, directory: Path) -> ModelPackage:
        import pandas as pd

        from trainpipe.tasks.lm.gpt import GPT
        from trainpipe.tasks.lm.module import gpt_config
        from trainpipe.tasks.lm.predictor import DEFAULT_PARAMS, TOKENIZER_DIR, LanguagePredictor

        spec = {k: v for k, v in module.spec.items() if k != "tokenizer_files"}
        # plain CPU weights whatever the training did to the module (GPU, FSDP2, compile)
        weights = module.portable_state_dict()
        write_weights_and_spec(directory, {k: v for k, v in weights.items() if k != TIED}, spec)
        prepared.tokenizer.save(directory / TOKENIZER_DIR)
        model = GPT(gpt_config(spec))
        model.load_state_dict(weights)
        predictor = LanguagePredictor(spec, model, prepared.tokenizer)
        example = pd.DataFrame(
            {"prompt": [prepared.tokenizer.decode(prepared.splits["test"][1:9])]}
        )
        return finish_package(
            directory,
            task=self.name,
            pyfunc_module=PYFUNC_MODULE,
            example=example,
            predictions=predictor.predict(example, {"max_new_tokens": 8}),
            params=DEFAULT_PARAMS,
            metadata={"tokenizer": spec["tokenizer"], "gpt": spec["gpt"]},
            more_artifacts={"tokenizer": TOKENIZER_DIR},
        )

    def load_predictor(self, source: Path | dict[str, Any]) -> Any:
        from trainpipe.tasks.lm.predictor import TOKENIZER_DIR, LanguagePredictor

        if isinstance(source, dict):  # a checkpoint, already loaded weights-only
            return LanguagePredictor.from_checkpoint(
                source, load_files_tokenizer(source["trainpipe_model"])
            )
        directory = Path(source)
        return LanguagePredictor.from_files(
            directory / SPEC_FILE, directory / WEIGHTS_FILE, directory / TOKENIZER_DIR
        )

    def figures(self, predictor: Any, prepared: Any) -> dict[str, Any]:
        return {}  # the model card's learning curves say it all; samples are artifacts already

    def check_compatible(self, predictor: Any, prepared: Any) -> None:
        if predictor.spec["tokenizer_fingerprint"] != prepared.tokenizer.fingerprint:
            raise DataError(
                f"tokenizer: the data was tokenised with {prepared.tokenizer.kind} "
                f"({prepared.tokenizer.fingerprint}), the model with {predictor.spec['tokenizer']} "
                f"({predictor.spec['tokenizer_fingerprint']})"
            )

    def evaluate(
        self, predictor: Any, prepared: Any, batch_size: int, device: str
    ) -> dict[str, float]:
        import torch

        from trainpipe.data.windows import window_loader
        from trainpipe.tasks.lm.module import eval_metrics

        model = predictor.model.to(device).eval()
        seq_len = model.config.seq_len
        total, windows = 0.0, 0
        with torch.inference_mode():
            for inputs, targets in window_loader(
                prepared.splits["test"], seq_len, batch_size, shuffle=False, seed=0
            ):
                total += float(model.loss(inputs.to(device), targets.to(device))) * len(inputs)
                windows += len(inputs)
        model.cpu()
        metrics = eval_metrics(total / windows, prepared.bytes_per_token["test"])
        return {f"test/{name}": value for name, value in metrics.items()}

    def export(self, predictor: Any, out_dir: Path) -> Path:
        """A Hugging Face GPT-2 checkpoint (config.json + model.safetensors + tokenizer files)."""
        import tempfile

        from trainpipe.tasks.lm.hf import export_hf, export_tokenizer

        eot = predictor.tokenizer.eot_id
        with tempfile.TemporaryDirectory() as tmp:
            files = export_tokenizer(predictor.tokenizer, Path(tmp))
            return export_hf(predictor.model, out_dir, files, bos_token_id=eot, eos_token_id=eot)

    def model_shape(self, conf: dict[str, Any], notes: list[str]) -> Any:
        from trainpipe.tasks.lm.shape import model_shape

        return model_shape(conf, notes)


def build_gpt_module(model_cfg: Any, spec: dict[str, Any], task: LanguageModelTask) -> Any:
    """The builder the GPT config names (`_target_`): a GPT of the configured shape (or
    `model.init_from`'s), its optimizer, schedule, gradient clipping and compilation."""
    from trainpipe.config.targets import instantiate_checked
    from trainpipe.tasks.lm.gpt import GPTConfig
    from trainpipe.tasks.lm.module import LanguageModule

    start = None
    if model_cfg.get("init_from"):
        start = pretrained_gpt(model_cfg, spec)
        config = start.config
    else:
        config = GPTConfig(
            vocab_size=spec["vocab_size"],
            seq_len=model_cfg.seq_len,
            n_layer=model_cfg.n_layer,
            n_head=model_cfg.n_head,
            d_model=model_cfg.d_model,
            dropout=model_cfg.dropout,
            bias=model_cfg.bias,
            activation_checkpointing=model_cfg.activation_checkpointing,
        )
    full_spec = {**spec, "gpt": dataclasses.asdict(config), "name": model_cfg.name}
    optimizer = instantiate_checked(model_cfg.optimizer, "model.optimizer")
    scheduler = model_cfg.get("scheduler")
    if scheduler is not None:
        scheduler = instantiate_checked(scheduler, "model.scheduler")
    return LanguageModule(
        full_spec,
        optimizer,
        scheduler,
        model_cfg.grad_clip,
        start,
        compile=model_cfg.get("compile", False),
    )


def pretrained_gpt(model_cfg: Any, spec: dict[str, Any]) -> Any:
    """`model.init_from`: a local Hugging Face GPT-2, fitted to model.seq_len and the tokenizer."""
    import torch

    from trainpipe.tasks.lm.gpt import GPT
    from trainpipe.tasks.lm.hf import load_hf

    try:
        model = load_hf(Path(model_cfg.init_from).expanduser(), dropout=model_cfg.dropout)
    except (ValueError, OSError) as err:
        raise ConfigError("model.init_from", str(err)) from None
    if spec["vocab_size"] > model.config.vocab_size:
        raise ConfigError(
            "tokenizer",
            f"has {spec['vocab_size']} ids but the init_from model knows {model.config.vocab_size}; "
            "use the checkpoint's own tokenizer (tokenizer=pretrained tokenizer.path=…)",
        )
    vocab = spec["vocab_size"]
    if model_cfg.seq_len == model.config.seq_len and vocab == model.config.vocab_size:
        return model
    # the context cropped to model.seq_len, the vocabulary to the tokenizer's (ids it never
    # produces would otherwise be sampled); both only drop rows of the pretrained weights
    fitted = GPT(dataclasses.replace(model.config, seq_len=model_cfg.seq_len, vocab_size=vocab))
    state = model.state_dict()
    state["wpe.weight"] = state["wpe.weight"][: model_cfg.seq_len]
    rows = fitted.wte.weight.shape[0]
    state["wte.weight"] = state["wte.weight"][:rows]
    if rows > state["wte.weight"].shape[0]:  # the padded tail: never a token, so zeros are fine
        pad = rows - state["wte.weight"].shape[0]
        state["wte.weight"] = torch.cat(
            [state["wte.weight"], state["wte.weight"].new_zeros(pad, state["wte.weight"].shape[1])]
        )
    state["lm_head.weight"] = state["wte.weight"]
    fitted.load_state_dict(state)  # lm_head stays tied to wte
    return fitted


def _pretrained_positions(directory: str) -> int:
    """n_positions of a Hugging Face GPT-2 dir (read from its config.json: no torch needed)."""
    config = Path(directory).expanduser() / "config.json"
    if not config.is_file():
        raise ConfigError(
            "model.init_from", f"no config.json in {directory!r} (a Hugging Face GPT-2 dir)"
        )
    try:
        return int(json.loads(config.read_text())["n_positions"])
    except (ValueError, KeyError) as err:
        raise ConfigError("model.init_from", f"{config} is not a GPT-2 config: {err}") from None
