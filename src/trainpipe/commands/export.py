"""`trainpipe export MODEL_URI_OR_CKPT --format hf OUT_DIR`: write a trained GPT as a Hugging Face
GPT-2 checkpoint (config.json + model.safetensors + tokenizer files) that
`transformers.GPT2LMHeadModel.from_pretrained(OUT_DIR)` loads with the same logits; its tokenizer
(`AutoTokenizer.from_pretrained(OUT_DIR)`, byte-level models included) puts the end-of-text token
first, as trainpipe's generator does."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from trainpipe.commands import EXPECTED_FAILURES, failure_exit
from trainpipe.errors import ConfigError

FORMATS = ("hf",)


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trainpipe export", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "model", help="a checkpoint file, models:/NAME/VERSION or models:/NAME@ALIAS"
    )
    parser.add_argument("out_dir", type=Path, help="the directory to write (created if missing)")
    parser.add_argument(
        "--format", choices=FORMATS, default="hf", help="hf: Hugging Face GPT-2 (default)"
    )
    parser.add_argument(
        "--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    )
    parsed = parser.parse_args(args)
    try:
        out_dir = export(parsed.model, parsed.out_dir, parsed.tracking_uri)
    except EXPECTED_FAILURES as err:
        return failure_exit(err)
    print(
        f"trainpipe: wrote {out_dir} (transformers.GPT2LMHeadModel.from_pretrained({str(out_dir)!r}))"
    )
    return 0


def export(model_uri: str, out_dir: Path, tracking_uri: str | None) -> Path:
    from trainpipe.loading import load_model
    from trainpipe.tasks import get_task
    from trainpipe.tasks.base import EXPORT

    predictor, _ = load_model(model_uri, tracking_uri, key="model")
    task = get_task(predictor.spec["task"])
    if EXPORT not in task.capabilities:
        raise ConfigError(
            "model",
            f"{model_uri!r} is a {task.name} model; only language models export to hf",
        )
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "config.json").is_file():
        raise ConfigError(
            "out_dir", f"{out_dir} exists and is not an exported model; choose an empty dir"
        )
    return task.export(predictor, out_dir)
