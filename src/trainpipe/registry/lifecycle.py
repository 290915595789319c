"""The registry lifecycle: promote (through the gate), roll back, retire (docs/registry.md).

    register → challenger ──promote (gate passes, or --force --reason)──→ champion
                                 rollback: champion → the previous champion
    retire: aliases removed, tagged retired; promoting it again needs --force

Every change is recorded in the audit log (audit.py). Refusals change nothing and are not
recorded; they come back as a `Decision` with `promoted=False`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainpipe.errors import ConfigError
from trainpipe.registry.audit import AuditLog, resolve_actor
from trainpipe.registry.gate import Gate, judge
from trainpipe.registry.scoring import HeldOut, Scores, load_held_out, score_held_out
from trainpipe.registry.store import RegisteredModel, is_retired, number_of
from trainpipe.tracking.model_versions import CHALLENGER


@dataclass
class Decision:
    """What `promote` decided, with the numbers it decided on."""

    promoted: bool  # the version is the champion now
    version: str
    champion_before: str | None
    # "challenger" (and "champion", when it was scored) → test metrics
    scores: dict[str, dict[str, float]]
    rule: str  # the gate, e.g. "test/acc (max): challenger >= champion"
    message: str  # one line for people
    forced: bool = False  # promoted although the gate (or a check) refused
    objections: list[str] = field(default_factory=list)  # why it was (or would have been) refused
    event: dict[str, Any] | None = None  # the audit event, when something changed


def require_reason(reason: str | None, why: str) -> str:
    if not reason or not reason.strip():
        raise ConfigError("--reason", f'{why} needs --reason "…" (it goes into the audit log)')
    return reason.strip()


def champion(tracking_uri: str, name: str) -> Any | None:
    """The ModelVersion that is `name`'s champion now (None before the first promotion)."""
    return RegisteredModel(tracking_uri, name).champion()


def recorded_gate(tracking_uri: str, name: str, version: str | None = None) -> tuple[str, Gate]:
    """(the version number, the gate recorded in its training config), for `version` (default:
    the challenger): what command-line flags override part of."""
    from trainpipe.tracking.model_versions import training_config

    number = number_of(RegisteredModel(tracking_uri, name).version(version or CHALLENGER))
    return number, Gate.from_config(training_config(f"models:/{name}/{number}", tracking_uri))


def promote(
    tracking_uri: str,
    name: str,
    version: str | None = None,
    *,
    force: bool = False,
    reason: str | None = None,
    actor: str | None = None,
    gate: Gate | None = None,
    held_out: HeldOut | None = None,
    challenger: Scores | None = None,
) -> Decision:
    """Make `version` (default: the challenger) the champion if it passes `gate` (default: the
    gate recorded in its training config) against the champion on the challenger's test split.

    A caller that has already loaded the version with its test data (`held_out`) and scored it
    (`challenger`, e.g. the pipeline's evaluate stage) hands them in: neither is done again.
    `force` (with a `reason`) promotes despite a refusal. Unknown names raise RegistryError."""
    if force:
        reason = require_reason(reason, "--force")
    model = RegisteredModel(tracking_uri, name)
    target = model.version(version or CHALLENGER)
    before = model.champion()
    number = number_of(target)
    before_number = number_of(before) if before else None
    if before_number == number:
        message = f"version {number} is already the champion of {name}"
        return Decision(True, number, number, {}, "", message)

    if held_out is None:
        held_out = load_held_out(f"models:/{name}/{number}", tracking_uri)
    task = held_out.task
    rule = (gate or Gate.from_config(held_out.trained_conf)).resolve(
        task.objective.gate_metric, task.objective.mode, task.metric_directions
    )
    split_digest, scores, objections = _score_both(
        held_out, target, before, tracking_uri, challenger
    )
    if is_retired(target):
        why = target.tags.get("retired_reason", "")
        objections.insert(0, f"version {number} is retired" + (f" ({why})" if why else ""))
    unscored = None
    if before is not None and "champion" not in scores:
        unscored = f"not compared with champion v{before_number} (the data checks refused it)"
    verdict = judge(rule, scores["challenger"], scores.get("champion"), unscored=unscored)
    if not verdict.passed:
        objections.append(f"the gate refused: {verdict.why}")
    if objections and not force:
        message = f"version {number} not promoted: {'; '.join(objections)}"
        return Decision(
            False, number, before_number, scores, rule.describe(), message, objections=objections
        )

    model.make_champion(number, before_number)
    forced = bool(objections)
    event = {
        "action": "promote",
        "version": number,
        "actor": resolve_actor(actor),
        "reason": reason,
        "forced": forced,
        "champion_before": before_number,
        "gate": {"rule": rule.describe(), "result": verdict.why, **scores},
        "split_digest": split_digest,
        **({"overrode": objections} if forced else {}),
    }
    recorded = AuditLog(model.client, name).append(event)
    message = f"version {number} is now the champion of {name}"
    message += f" (was {before_number})" if before_number else " (the first)"
    if forced:
        message += f"; forced over: {'; '.join(objections)}"
    return Decision(
        True, number, before_number, scores, rule.describe(), message, forced, objections, recorded
    )


def rollback(
    tracking_uri: str, name: str, *, reason: str | None = None, actor: str | None = None
) -> dict[str, Any]:
    """`champion` back to the previous champion (RegistryError if there is none); returns the
    audit event."""
    model = RegisteredModel(tracking_uri, name)
    restored, replaced = model.roll_back()
    event = {
        "action": "rollback",
        "version": restored,
        "actor": resolve_actor(actor),
        "reason": reason,
        "champion_before": replaced,
    }
    return AuditLog(model.client, name).append(event)


def retire(
    tracking_uri: str, name: str, version: str, *, reason: str | None, actor: str | None = None
) -> dict[str, Any]:
    """Take `version` out of the lifecycle: no aliases, tagged retired, never rolled back to;
    returns the audit event."""
    reason = require_reason(reason, "retire")
    model = RegisteredModel(tracking_uri, name)
    number = number_of(model.version(version))
    aliases = model.retire(number, reason)
    event = {
        "action": "retire",
        "version": number,
        "actor": resolve_actor(actor),
        "reason": reason,
        "aliases_removed": aliases,
    }
    return AuditLog(model.client, name).append(event)


def history(tracking_uri: str, name: str) -> list[dict[str, Any]]:
    """The model's audit events, in order."""
    model = RegisteredModel(tracking_uri, name)
    return AuditLog(model.client, name).read()


def _score_both(
    held_out: HeldOut,
    target: Any,
    before: Any | None,
    tracking_uri: str,
    challenger: Scores | None = None,
) -> tuple[str, dict[str, dict[str, float]], list[str]]:
    """(split digest, role → test metrics, objections): the challenger scored on its test split
    (unless its scores are given); the champion on the same rows if its splits are the
    challenger's, else an objection."""
    challenger = challenger or score_held_out(held_out)
    scores = {"challenger": challenger.metrics}
    objections = _data_objections(target, before, challenger)
    if before is not None and not objections:
        from trainpipe.loading import load_model

        uri = f"models:/{before.name}/{number_of(before)}"
        predictor, _ = load_model(uri, tracking_uri, key="champion")
        scores["champion"] = score_held_out(held_out, predictor).metrics
    return challenger.split_digest, scores, objections


def _data_objections(target: Any, before: Any | None, challenger: Scores) -> list[str]:
    """Why the scores would not be held-out or comparable: the challenger's data changed since it
    was trained, or the champion was trained on other splits (it may have seen these test rows)."""
    found = []
    recorded = target.tags.get("split_digest")
    if recorded != challenger.split_digest:
        found.append(
            f"the challenger's data is not what it was trained on (split digest "
            f"{recorded or 'not recorded'} → {challenger.split_digest})"
        )
    if before is not None and before.tags.get("split_digest") != challenger.split_digest:
        found.append(
            f"the champion (version {number_of(before)}) was trained on other splits (split digest "
            f"{before.tags.get('split_digest') or 'not recorded'}, challenger "
            f"{challenger.split_digest}): the scores are not comparable"
        )
    return found
