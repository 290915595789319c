"""`trainpipe models list|history|promote|rollback|retire NAME`: the registry lifecycle
(docs/registry.md).

Exit codes: 0 done; 1 the gate (or a check) refused a promotion, or the tracking store failed;
2 a mistake in the command (unknown model, version or alias, a missing --reason, nothing to roll
back to): one line naming it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

from trainpipe.errors import USER_ERROR_EXIT_CODE, UserError

MLFLOW_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
EXAMPLES = """examples:
  trainpipe models list digits
  trainpipe models promote digits                      # the challenger, through the gate
  trainpipe models promote digits --version 3 --min-improvement 0.01
  trainpipe models promote digits --version 2 --force --reason "hotfix for #123"
  trainpipe models rollback digits
  trainpipe models retire digits --version 1 --reason "trained on leaked labels"
  trainpipe models history digits
"""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit 2 like every other user error."""

    def error(self, message: str) -> NoReturn:
        print(f"trainpipe: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="trainpipe models",
        description="the registry lifecycle: challenger → champion through a gate, rollback, "
        "retirement, an audit log",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {
        "list": "versions with their aliases, status, test metrics and data",
        "history": "the audit log: every promote, rollback and retire, in order",
        "promote": "make the challenger (or --version) the champion if it passes the gate",
        "rollback": "make the previous champion the champion again",
        "retire": "take a version out of the lifecycle (removes its aliases)",
    }
    sub = {
        name: commands.add_parser(name, help=text, description=text) for name, text in helps.items()
    }
    for command in sub.values():
        command.add_argument("name", help="the registered model's name")
        command.add_argument(
            "--tracking-uri",
            default=None,
            help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db",
        )
    sub["history"].add_argument("--json", action="store_true", help="print the raw JSON lines")
    promote = sub["promote"]
    promote.add_argument("--version", help="a version number or alias (default: challenger)")
    promote.add_argument("--force", action="store_true", help="promote despite a refusal")
    promote.add_argument("--metric", help="the gate's test metric (default: as recorded)")
    promote.add_argument("--direction", choices=("max", "min"), help="max: larger is better")
    promote.add_argument("--min-improvement", type=float, help="required gain over the champion")
    promote.add_argument("--floor", type=float, help="an absolute bar the challenger must reach")
    sub["retire"].add_argument("--version", required=True, help="a version number or alias")
    for name in ("promote", "rollback", "retire"):
        sub[name].add_argument("--reason", help="why (recorded in the audit log)")
    return parser


def tracking_uri(given: str | None) -> str:
    from trainpipe.registry import RegistryError

    uri = given or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    # MLflow would create an empty store at a mistyped path and report the model unknown
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise RegistryError(f"no MLflow store at {uri} (set --tracking-uri or MLFLOW_TRACKING_URI)")
    return uri


@contextlib.contextmanager
def interactive_mlflow() -> Iterator[None]:
    """MLflow settings for a command a person waits on, restored afterwards (main may run inside
    another process, e.g. a test): fail fast on an unreachable server instead of minutes of
    retries, no download progress bars, no warning about the models' `predict` type hints."""
    saved = {key: os.environ.get(key) for key in MLFLOW_SETTINGS}
    for key, value in MLFLOW_SETTINGS.items():
        os.environ.setdefault(key, value)
    show = warnings.showwarning

    def show_unless_type_hints(message: Any, *rest: Any, **kwargs: Any) -> None:
        # MLflow re-enables UserWarnings inside load_model, so a warnings filter cannot drop it
        if "type hints to the `predict` method" not in str(message):
            show(message, *rest, **kwargs)

    warnings.showwarning = show_unless_type_hints
    try:
        yield
    finally:
        warnings.showwarning = show
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main(args: list[str]) -> int:
    parsed = build_parser().parse_args(args)
    try:
        with interactive_mlflow():
            return RUN[parsed.command](tracking_uri(parsed.tracking_uri), parsed)
    except UserError as err:
        print(f"trainpipe: {err}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    except Exception as err:
        from mlflow.exceptions import MlflowException

        if not isinstance(err, MlflowException):
            raise
        print(f"trainpipe: tracking error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 1


def run_promote(uri: str, parsed: argparse.Namespace) -> int:
    from trainpipe.registry import lifecycle

    overrides = {
        "metric": parsed.metric,
        "direction": parsed.direction,
        "min_improvement": parsed.min_improvement,
        "floor": parsed.floor,
    }
    gate, version = None, parsed.version
    if any(v is not None for v in overrides.values()):
        version, recorded = lifecycle.recorded_gate(uri, parsed.name, version)
        gate = recorded.with_overrides(**overrides)
    decision = lifecycle.promote(
        uri, parsed.name, version, force=parsed.force, reason=parsed.reason, gate=gate
    )
    for role in ("challenger", "champion"):
        number = decision.version if role == "challenger" else decision.champion_before
        if role in decision.scores:
            print(f"{role:<11} version {number}  {metric_text(decision.scores[role])}")
    if decision.rule:
        print(f"{'rule':<11} {decision.rule}")
    if not decision.promoted:
        print(f'trainpipe: {decision.message} (--force --reason "…" overrides)', file=sys.stderr)
        return 1
    print(f"trainpipe: {decision.message}")
    return 0


def run_rollback(uri: str, parsed: argparse.Namespace) -> int:
    from trainpipe.registry import rollback

    event = rollback(uri, parsed.name, reason=parsed.reason)
    print(
        f"trainpipe: version {event['version']} is the champion of {parsed.name} again "
        f"(was {event['champion_before']})"
    )
    return 0


def run_retire(uri: str, parsed: argparse.Namespace) -> int:
    from trainpipe.registry import retire

    event = retire(uri, parsed.name, parsed.version, reason=parsed.reason)
    removed = ", ".join(event["aliases_removed"]) or "none"
    print(
        f"trainpipe: retired version {event['version']} of {parsed.name} (aliases removed: {removed})"
    )
    return 0


def run_history(uri: str, parsed: argparse.Namespace) -> int:
    from trainpipe.registry import history
    from trainpipe.registry.audit import describe

    events = history(uri, parsed.name)
    for event in events:
        print(json.dumps(event, ensure_ascii=False) if parsed.json else describe(event))
    if not events and not parsed.json:
        print(f"trainpipe: {parsed.name} has no lifecycle events yet")
    return 0


def run_list(uri: str, parsed: argparse.Namespace) -> int:
    from trainpipe.registry.store import RegisteredModel, number_of, status

    model = RegisteredModel(uri, parsed.name)
    aliases, versions = model.aliases(), model.versions()
    metrics = sorted({k for v in versions for k in v.tags if k.startswith("test/")})
    header = ["version", "aliases", "status", *metrics, "data digest", "created", "run id"]
    rows = [
        [
            number_of(v),
            ",".join(sorted(a for a, n in aliases.items() if n == number_of(v))) or "—",
            status(v, aliases),
            *(v.tags.get(m, "—") for m in metrics),
            v.tags.get("dataset_digest", "—"),
            utc_minute(v.creation_timestamp),
            v.run_id or "—",
        ]
        for v in versions
    ]
    print_table(header, rows)
    return 0


RUN = {
    "list": run_list,
    "history": run_history,
    "promote": run_promote,
    "rollback": run_rollback,
    "retire": run_retire,
}


def print_table(header: list[str], rows: list[list[Any]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


def metric_text(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))


def utc_minute(millis: int | None) -> str:
    if not millis:
        return "—"
    moment = datetime.fromtimestamp(millis / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%MZ")
