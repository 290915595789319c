"""Passwords inside config values (a database URI's `user:password@`) are masked wherever a value
is shown: params, tags, the recorded config, logs and error messages. Pure Python."""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
# scheme://user:password@host → scheme://user:***@host, wherever it appears in a text
PASSWORD_IN_URL = re.compile(r"(\b[A-Za-z][\w+.-]*://[^/\s:@]*:)[^@\s/]*@")


def mask_passwords(text: str) -> str:
    """`text` with the password of every URL in it masked."""
    return PASSWORD_IN_URL.sub(rf"\1{MASK}@", text)


def masked_config(value: Any) -> Any:
    """A copy of a config (nested dicts and lists) with every URL's password masked."""
    if isinstance(value, dict):
        return {k: masked_config(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked_config(v) for v in value]
    return mask_passwords(value) if isinstance(value, str) else value
