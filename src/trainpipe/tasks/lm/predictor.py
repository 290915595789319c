"""A trained language model ready to generate: behind `trainpipe generate`, `trainpipe eval`, the
model package and the registered MLflow model.

Input: a DataFrame with a `prompt` column, a list of strings, or one string. Params:
`max_new_tokens` (64), `temperature` (1.0; 0 = greedy), `top_k` (0 = all tokens), `seed` (0;
-1 = fresh randomness). Output: one continuation per prompt (a Series named `continuation`).
Generation uses a KV cache: each new token costs one position, not the whole prefix.
Batch scoring (`trainpipe predict`, `score`): the `prompt` column in, a `continuation` column out,
each prompt continued exactly as `predict` continues it with the same params.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from trainpipe.errors import DataError
from trainpipe.packaging import checkpoint_weights
from trainpipe.tasks.base import ScoreOptions
from trainpipe.tasks.lm.generate import generate
from trainpipe.tasks.lm.gpt import GPT
from trainpipe.tasks.lm.module import gpt_config

TOKENIZER_DIR = "tokenizer"
PROMPT_COLUMN = "prompt"
DEFAULT_PARAMS = {"max_new_tokens": 64, "temperature": 1.0, "top_k": 0, "seed": 0}


class LanguagePredictor:
    data_kind = "text"

    def __init__(self, spec: dict[str, Any], model: GPT, tokenizer: Any) -> None:
        self.spec = spec
        self.model = model.eval()
        self.tokenizer = tokenizer

    @classmethod
    def from_files(
        cls, spec_path: str | Path, weights_path: str | Path, tokenizer_dir: str | Path
    ) -> LanguagePredictor:
        """From a model package (safetensors + JSON spec + tokenizer files; nothing unpickled)."""
        from safetensors.torch import load_file

        from trainpipe.data.tokenizers import load_tokenizer

        spec = json.loads(Path(spec_path).read_text())
        model = GPT(gpt_config(spec))
        model.load_state_dict(load_file(str(weights_path)), strict=False)  # lm_head is tied to wte
        return cls(spec, model, load_tokenizer(tokenizer_dir, key="model_uri"))

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], tokenizer: Any) -> LanguagePredictor:
        spec = checkpoint["trainpipe_model"]
        model = GPT(gpt_config(spec))
        model.load_state_dict(checkpoint_weights(checkpoint))
        return cls(spec, model, tokenizer)

    def prompts(self, model_input: Any) -> list[str]:
        if isinstance(model_input, str):
            return [model_input]
        if isinstance(model_input, pd.DataFrame):
            if "prompt" not in model_input.columns:
                raise ValueError(
                    f"input needs a `prompt` column; it has {list(model_input.columns)}"
                )
            model_input = model_input["prompt"].tolist()
        prompts = list(model_input)
        if not all(isinstance(p, str) for p in prompts):
            raise ValueError(
                "input must be strings: a DataFrame with a `prompt` column, a list, or one string"
            )
        return prompts

    def continue_text(
        self, prompt: str, max_new_tokens: int, temperature: float, top_k: int, seed: int
    ) -> str:
        # every document starts after an end-of-text token in training: so does every prompt
        ids = [self.tokenizer.eot_id, *self.tokenizer.encode_batch([prompt])[0]]
        new = generate(
            self.model,
            ids,
            max_new_tokens,
            temperature=temperature,
            top_k=top_k or None,
            seed=None if seed < 0 else seed,
            stop_token=self.tokenizer.eot_id,
        )
        if new and new[-1] == self.tokenizer.eot_id:
            new = new[:-1]
        return self.tokenizer.decode(new)

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> pd.Series:
        options = {**DEFAULT_PARAMS, **(params or {})}
        unknown = set(options) - set(DEFAULT_PARAMS)
        if unknown:
            raise ValueError(
                f"unknown params {sorted(unknown)}; accepted: {sorted(DEFAULT_PARAMS)}"
            )
        return pd.Series(
            self._continue_all(self.prompts(model_input), options), name="continuation"
        )

    def _continue_all(self, prompts: Any, options: dict[str, Any]) -> list[str]:
        with torch.inference_mode():
            return [
                self.continue_text(
                    prompt,
                    int(options["max_new_tokens"]),
                    float(options["temperature"]),
                    int(options["top_k"]),
                    int(options["seed"]),
                )
                for prompt in prompts
            ]

    # -- batch scoring (trainpipe predict) --------------------------------------------------
    def input_columns(self) -> list[str]:
        return [PROMPT_COLUMN]

    def output_columns(self, options: ScoreOptions) -> list[str]:
        return ["continuation"]

    def score(self, frame: pd.DataFrame, options: ScoreOptions) -> dict[str, Any]:
        prompts = frame[PROMPT_COLUMN]
        not_text = [p for p in prompts if not isinstance(p, str)]
        if not_text and options.skip_bad:  # None for them, the others continued
            self.model.to(options.device)
            sampling = {**DEFAULT_PARAMS, **options.sampling}
            texts = iter(self._continue_all([p for p in prompts if isinstance(p, str)], sampling))
            return {"continuation": [next(texts) if isinstance(p, str) else None for p in prompts]}
        if not_text:
            raise DataError(
                f"column {PROMPT_COLUMN!r} must hold text, got {not_text[0]!r} "
                f"({len(not_text)} of {len(prompts)} rows in this chunk)"
            )
        self.model.to(options.device)
        return {"continuation": self._continue_all(prompts, {**DEFAULT_PARAMS, **options.sampling})}
