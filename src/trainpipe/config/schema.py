"""What a valid trainpipe config looks like: allowed keys per section and per-key value rules.

The rules are data, checked by `validate.py` before torch is imported. Sections whose keys are
passed on to a `_target_` we do not own (optimizers, schedulers, callbacks) are checked against
the argument names of the known targets; unknown targets (a user's own class) are let through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    """Type and range of one config value."""

    types: tuple[type, ...]
    nullable: bool = False
    min: float | None = None  # inclusive
    max: float | None = None  # inclusive
    gt: float | None = None  # exclusive
    lt: float | None = None  # exclusive
    choices: tuple[Any, ...] | None = None

    def describe(self) -> str:
        parts = ["/".join("number" if t is float else t.__name__ for t in self.types)]
        if self.choices is not None:
            parts = ["one of " + ", ".join(map(str, self.choices))]
        for word, bound in (("> ", self.gt), (">= ", self.min), ("< ", self.lt), ("<= ", self.max)):
            if bound is not None:
                parts.append(f"{word}{bound}")
        if self.nullable:
            parts.append("or null")
        return " ".join(parts)


INT = Rule((int,))
POS_INT = Rule((int,), min=1)
NON_NEG_INT = Rule((int,), min=0)
NUMBER = Rule((int, float))
POS_NUMBER = Rule((int, float), gt=0)
FRACTION_OPEN = Rule((int, float), gt=0, lt=1)
STR = Rule((str,))
OPT_STR = Rule((str,), nullable=True)
BOOL = Rule((bool,))
OPT_LIST = Rule((list,), nullable=True)
LIST = Rule((list,))
ANY = Rule((object,), nullable=True)
DICT = Rule((dict,))
OPT_DICT = Rule((dict,), nullable=True)
INT_OR_FRACTION = Rule((int, float), min=0)
DEVICES = Rule((int, str, list))

# top-level keys of each entry config
TOP_LEVEL: dict[str, dict[str, Rule]] = {
    "train": {
        "task_name": STR,
        "experiment_name": STR,
        "run_name": OPT_STR,
        "seed": INT,
        "test_after_fit": BOOL,
        "optimized_metric": STR,
        "optimized_mode": Rule((str,), choices=("max", "min")),
        "registry": DICT,
        "data": DICT,
        "model": DICT,
        "trainer": DICT,
        "logger": DICT,
        "callbacks": OPT_DICT,
        "paths": DICT,
        "experiment": OPT_STR,
        "debug": OPT_STR,
        "hparams_search": OPT_STR,
        "resume": STR,
        "checkpoint": DICT,
        "preemption": DICT,
        "divergence": DICT,
        # added to each job by the trainpipe_optuna sweeper: which trial this job evaluates
        "optuna_trial": OPT_DICT,
    },
    "eval": {
        "task_name": STR,
        "experiment_name": STR,
        "run_name": OPT_STR,
        "seed": INT,
        "model_uri": STR,
        "device": Rule((str,), choices=("auto", "cpu", "cuda")),
        "data": DICT,
        "logger": DICT,
        "paths": DICT,
        "experiment": OPT_STR,
    },
}

# key rules inside sections, by dotted prefix; every key of these sections must be listed
SECTIONS: dict[str, dict[str, Rule]] = {
    "registry": {"register": BOOL, "model_name": STR},
    "checkpoint": {"_target_": STR, "every_n_steps": NON_NEG_INT, "keep_last": POS_INT},
    "preemption": {"signals": LIST, "requeue": Rule((str,), choices=("auto", "never"))},
    "divergence": {"_target_": STR, "max_skipped_batches": NON_NEG_INT, "check_gradients": BOOL},
    "paths": {"root_dir": STR, "log_dir": STR, "output_dir": STR, "cache_dir": STR},
    "data": {
        "_target_": STR,
        "name": STR,
        "source": Rule((str,), choices=("digits", "csv", "parquet", "json", "hub")),
        "path": OPT_STR,
        "target": STR,
        "features": OPT_LIST,
        "image_shape": OPT_LIST,
        "val_fraction": FRACTION_OPEN,
        "test_fraction": FRACTION_OPEN,
        "batch_size": POS_INT,
        "num_workers": NON_NEG_INT,
        "seed": INT,
        "cache_dir": STR,
    },
    "model": {
        "_target_": STR,
        "name": STR,
        "net": DICT,
        "optimizer": DICT,
        "scheduler": OPT_DICT,
    },
    "trainer": {
        "_target_": STR,
        "accelerator": Rule((str,), choices=("auto", "cpu", "gpu", "cuda", "mps", "tpu")),
        "strategy": ANY,
        "devices": DEVICES,
        "num_nodes": POS_INT,
        "max_epochs": POS_INT,
        "min_epochs": Rule((int,), min=0, nullable=True),
        "max_steps": Rule((int,), min=-1),
        "precision": Rule(
            (str, int),
            choices=(
                "32-true",
                "32",
                32,
                "16-mixed",
                "bf16-mixed",
                "bf16-true",
                "16-true",
                "64-true",
                "transformer-engine",
            ),
        ),
        "check_val_every_n_epoch": Rule((int,), min=1, nullable=True),
        "val_check_interval": Rule((int, float), gt=0, nullable=True),
        "log_every_n_steps": POS_INT,
        "gradient_clip_val": Rule((int, float), min=0, nullable=True),
        "gradient_clip_algorithm": Rule((str,), choices=("norm", "value"), nullable=True),
        "accumulate_grad_batches": POS_INT,
        "deterministic": Rule((bool, str)),
        "benchmark": Rule((bool,), nullable=True),
        "num_sanity_val_steps": Rule((int,), min=-1),
        "enable_progress_bar": BOOL,
        "enable_model_summary": BOOL,
        "enable_checkpointing": BOOL,
        "limit_train_batches": INT_OR_FRACTION,
        "limit_val_batches": INT_OR_FRACTION,
        "limit_test_batches": INT_OR_FRACTION,
        "limit_predict_batches": INT_OR_FRACTION,
        "overfit_batches": INT_OR_FRACTION,
        "profiler": Rule((str,), choices=("simple", "advanced", "pytorch"), nullable=True),
        "sync_batchnorm": BOOL,
        "use_distributed_sampler": BOOL,
        "detect_anomaly": BOOL,
        "inference_mode": BOOL,
        "barebones": BOOL,
        "reload_dataloaders_every_n_epochs": NON_NEG_INT,
        "default_root_dir": OPT_STR,
        "fast_dev_run": Rule((bool, int)),
        "max_time": ANY,
    },
    "model.optimizer": {
        "_target_": STR,
        "_partial_": BOOL,
        "lr": POS_NUMBER,
        "weight_decay": Rule((int, float), min=0),
    },
    "model.scheduler": {"_target_": STR, "_partial_": BOOL},
    "model.net": {"_target_": STR, "_partial_": BOOL, "dropout": Rule((int, float), min=0, lt=1)},
    "logger": {
        "_target_": STR,
        "tracking_uri": OPT_STR,
        "experiment_name": STR,
        "flush_interval_s": POS_NUMBER,
        "drain_timeout_s": Rule((int, float), min=0),
    },
}

ADAM_ARGS = {
    "lr",
    "betas",
    "eps",
    "weight_decay",
    "amsgrad",
    "foreach",
    "fused",
    "capturable",
    "maximize",
}

# argument names accepted by targets we know; a key outside these is a typo
KNOWN_TARGET_ARGS: dict[str, set[str]] = {
    "trainpipe.models.nets.MLP": {"hidden_sizes", "dropout"},
    "trainpipe.models.nets.CNN": {"channels", "hidden_size", "dropout"},
    "torch.optim.AdamW": ADAM_ARGS,
    "torch.optim.Adam": ADAM_ARGS,
    "torch.optim.SGD": {
        "lr",
        "momentum",
        "dampening",
        "weight_decay",
        "nesterov",
        "foreach",
        "fused",
        "maximize",
    },
    "torch.optim.RMSprop": {
        "lr",
        "alpha",
        "eps",
        "weight_decay",
        "momentum",
        "centered",
        "foreach",
        "maximize",
    },
    "torch.optim.lr_scheduler.CosineAnnealingLR": {"T_max", "eta_min"},
    "torch.optim.lr_scheduler.StepLR": {"step_size", "gamma"},
    "torch.optim.lr_scheduler.ExponentialLR": {"gamma"},
    "torch.optim.lr_scheduler.OneCycleLR": {
        "max_lr",
        "total_steps",
        "epochs",
        "steps_per_epoch",
        "pct_start",
    },
    "lightning.pytorch.callbacks.ModelCheckpoint": {
        "dirpath",
        "filename",
        "monitor",
        "mode",
        "save_top_k",
        "save_last",
        "auto_insert_metric_name",
        "every_n_epochs",
        "every_n_train_steps",
        "save_weights_only",
        "verbose",
        "save_on_train_epoch_end",
    },
    "lightning.pytorch.callbacks.EarlyStopping": {
        "monitor",
        "mode",
        "patience",
        "min_delta",
        "verbose",
        "strict",
        "check_finite",
        "stopping_threshold",
        "divergence_threshold",
        "check_on_train_epoch_end",
    },
    "lightning.pytorch.callbacks.LearningRateMonitor": {
        "logging_interval",
        "log_momentum",
        "log_weight_decay",
    },
    "lightning.pytorch.callbacks.RichProgressBar": {"refresh_rate", "leave"},
    "trainpipe.callbacks.throughput.ThroughputMonitor": {"warmup_steps", "output_path"},
}
