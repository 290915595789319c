"""A registered model's lifecycle state, kept in MLflow itself (no store of our own).

- aliases: `champion` (what serves), `challenger` (the newest registered version);
- the champion lineage: a registered-model tag holding the versions that were champion, oldest
  first, the current one last; `rollback` pops it;
- retirement: version tags `retired` / `retired_reason`.

Names a user gives that do not exist are `RegistryError`s (one line, exit 2).
"""

from __future__ import annotations

import json
from typing import Any

from trainpipe.errors import UserError
from trainpipe.tracking.model_versions import CHALLENGER, CHAMPION

LINEAGE_TAG = "trainpipe.champion_lineage"
LINEAGE_KEEP = 200  # versions kept in the lineage (a tag value holds at most 5000 characters)
RETIRED_TAG = "retired"
RETIRED_REASON_TAG = "retired_reason"


class RegistryError(UserError):
    """An unknown model, version or alias, or a lifecycle step that cannot be taken."""

    kind = "registry error"


def client_for(tracking_uri: str | None) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri)


def _missing(err: Exception) -> bool:
    return getattr(err, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


class RegisteredModel:
    """One registered model's versions, aliases and lifecycle tags."""

    def __init__(self, tracking_uri: str | None, name: str) -> None:
        from mlflow.exceptions import MlflowException

        self.tracking_uri = tracking_uri
        self.name = name
        self.client = client_for(tracking_uri)
        try:
            self.client.get_registered_model(name)
        except MlflowException as err:
            if not _missing(err):
                raise
            known = [m.name for m in self.client.search_registered_models(max_results=20)]
            listed = ", ".join(sorted(known)) or "none"
            raise RegistryError(
                f"unknown registered model {name!r} (registered: {listed})"
            ) from None

    def aliases(self) -> dict[str, str]:
        """alias → version number, read fresh (another command may have moved them)."""
        aliases = self.client.get_registered_model(self.name).aliases
        return {alias: str(number) for alias, number in aliases.items()}

    def versions(self) -> list[Any]:
        """Every version, oldest first."""
        found = self.client.search_model_versions(f"name='{self.name}'")
        return sorted(found, key=lambda v: int(v.version))

    def version(self, ref: str) -> Any:
        """The ModelVersion a user named: a version number, or an alias (`challenger`, `@champion`)."""
        from mlflow.exceptions import MlflowException

        ref = ref.strip()
        try:
            if ref.isdigit():
                return self.client.get_model_version(self.name, ref)
            return self.client.get_model_version_by_alias(self.name, ref.lstrip("@"))
        except MlflowException as err:
            if not _missing(err):
                raise
        if ref.isdigit():
            numbers = ", ".join(number_of(v) for v in self.versions())
            raise RegistryError(f"{self.name} has no version {ref} (versions: {numbers})")
        known = ", ".join(sorted(self.aliases())) or "none"
        raise RegistryError(f"{self.name} has no alias {ref.lstrip('@')!r} (aliases: {known})")

    def champion(self) -> Any | None:
        """The version holding the `champion` alias, if any."""
        number = self.aliases().get(CHAMPION)
        return None if number is None else self.client.get_model_version(self.name, number)

    # the champion lineage -------------------------------------------------------------------

    def lineage(self) -> list[str]:
        raw = self.client.get_registered_model(self.name).tags.get(LINEAGE_TAG)
        return [str(v) for v in json.loads(raw)] if raw else []

    def _save_lineage(self, lineage: list[str]) -> None:
        value = json.dumps(lineage[-LINEAGE_KEEP:], separators=(",", ":"))
        self.client.set_registered_model_tag(self.name, LINEAGE_TAG, value)

    def make_champion(self, version: str, before: str | None) -> None:
        """Move `champion` to `version`, remembering `before` for rollback; a promoted version is
        no longer the challenger nor retired."""
        lineage = self.lineage()
        if before is not None and (not lineage or lineage[-1] != before):
            lineage.append(before)  # the alias was moved by hand (e.g. in the MLflow UI)
        self.client.set_registered_model_alias(self.name, CHAMPION, version)
        if self.aliases().get(CHALLENGER) == version:
            self.client.delete_registered_model_alias(self.name, CHALLENGER)
        self._clear_retired(version)
        self._save_lineage([*lineage, version])

    def _earlier_champions(self) -> tuple[str | None, list[str]]:
        """(the current champion, the lineage without it at the end)."""
        current = self.aliases().get(CHAMPION)
        lineage = self.lineage()
        while lineage and lineage[-1] == current:
            lineage.pop()
        return current, lineage

    def roll_back(self) -> tuple[str, str | None]:
        """`champion` → the previous champion; returns (restored version, the one it replaced)."""
        current, lineage = self._earlier_champions()
        if not lineage:
            raise RegistryError(f"{self.name} has no previous champion to roll back to")
        self.client.set_registered_model_alias(self.name, CHAMPION, lineage[-1])
        self._save_lineage(lineage)
        return lineage[-1], current

    # retirement -------------------------------------------------------------------------------

    def retire(self, version: str, reason: str) -> list[str]:
        """Remove the version's aliases, tag it retired and drop it from the lineage (rollback
        never restores a retired version); returns the aliases it had."""
        aliases = [alias for alias, number in self.aliases().items() if number == version]
        if CHAMPION in aliases:
            raise RegistryError(
                f"version {version} is the champion of {self.name}; roll back or promote another "
                "version first"
            )
        for alias in aliases:
            self.client.delete_registered_model_alias(self.name, alias)
        self.client.set_model_version_tag(self.name, version, RETIRED_TAG, "true")
        self.client.set_model_version_tag(self.name, version, RETIRED_REASON_TAG, reason)
        lineage = self.lineage()
        if version in lineage:
            self._save_lineage([v for v in lineage if v != version])
        return aliases

    def _clear_retired(self, version: str) -> None:
        tags = self.client.get_model_version(self.name, version).tags
        for key in (RETIRED_TAG, RETIRED_REASON_TAG):
            if key in tags:
                self.client.delete_model_version_tag(self.name, version, key)


def number_of(version: Any) -> str:
    """A ModelVersion's number as a string (stores differ: the sqlite one gives an int)."""
    return str(version.version)


def is_retired(version: Any) -> bool:
    return version.tags.get(RETIRED_TAG) == "true"


def status(version: Any, aliases: dict[str, str]) -> str:
    """champion | challenger | retired | — (for `trainpipe models list`)."""
    mine = {alias for alias, number in aliases.items() if number == number_of(version)}
    if CHAMPION in mine:
        return CHAMPION
    if CHALLENGER in mine:
        return CHALLENGER
    return "retired" if is_retired(version) else "—"
