"""The resolved config as MLflow params: dotted keys, readable values, no secrets."""

from __future__ import annotations

import json
import re
from typing import Any

from trainpipe.config.secrets import mask_passwords

# MLflow's limit on a param value (6000 chars in MLflow >= 2.x)
MAX_PARAM_LENGTH = 6000
SECRET_KEY = re.compile(
    r"(token|password|passwd|secret|api[_-]?key|credential|auth)", re.IGNORECASE
)
REDACTED = "***"


def redact_url(value: str) -> str:
    """Drop the password of `scheme://user:password@host/...` URLs, also inside a longer text
    (`data.uri=postgresql://…` on a command line)."""
    return mask_passwords(value)


def flatten(conf: dict[str, Any], prefix: str = "", drop_private: bool = False) -> dict[str, str]:
    """`{"a": {"b": 1}}` → `{"a.b": "1"}`; lists stay one value (`[256, 128]`); secrets are masked.

    `drop_private` leaves out `_target_`, `_partial_` and other `_`-keys (Hydra's plumbing).
    """
    flat: dict[str, str] = {}
    for key, value in conf.items():
        full_key = f"{prefix}{key}"
        if drop_private and str(key).startswith("_"):
            continue
        if isinstance(value, dict) and value:
            flat.update(flatten(value, prefix=f"{full_key}.", drop_private=drop_private))
            continue
        if SECRET_KEY.search(str(key)):
            flat[full_key] = REDACTED
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        text = redact_url(text) if isinstance(value, str) else text
        flat[full_key] = (
            text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 1] + "…"
        )
    return flat
