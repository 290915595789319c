"""User-facing errors: raised for bad config or bad data, shown as one line, exit code 2."""

from __future__ import annotations

USER_ERROR_EXIT_CODE = 2


class UserError(Exception):
    """A mistake in what the user asked for (not a bug): printed without a traceback."""

    kind = "error"

    def __str__(self) -> str:
        return f"{self.kind}: {self.args[0]}"


class ConfigError(UserError):
    """A config key has a bad value, is unknown, or is missing."""

    kind = "config error"

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


class DataError(UserError):
    """The data named by the config cannot be used: missing file, unknown column, …"""

    kind = "data error"


class JobFailed(Exception):
    """The job ran and failed for a reason the user should read (e.g. divergence): one line, exit 1."""

    exit_code = 1
