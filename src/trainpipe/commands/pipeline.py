"""`trainpipe pipeline [--if-data-changed] [training overrides …] [pipeline.KEY=VALUE …]`

prepare → train → evaluate → register → promote, each stage cached by a hash of its inputs: a
rerun with nothing changed reuses every stage and takes seconds (docs/pipeline.md).

  --if-data-changed   do nothing (exit 0) when the configured data is what the current champion
                      was trained on (its `dataset_digest`); run the pipeline otherwise

Training overrides are those of `trainpipe train`; the pipeline's own keys are in
configs/pipeline.yaml (e.g. pipeline.evaluate.batch_size=512, pipeline.promote.enabled=false).
Exit codes: 0 promoted (or registered, with promotion off, or nothing to do); 1 the gate refused
the candidate, or a stage failed; 2 a mistake in the command, config or data (nothing written).
"""

from __future__ import annotations

import logging
import os
import sys
import textwrap
import time
from typing import Any

from trainpipe.commands import EXPECTED_FAILURES, failure_exit
from trainpipe.errors import USER_ERROR_EXIT_CODE

FLAGS = ("--if-data-changed",)


def main(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    unknown = [a for a in args if a.startswith("--") and a not in FLAGS]
    if unknown:
        print(f"trainpipe: error: unknown option {unknown[0]} (options: {', '.join(FLAGS)})",
              file=sys.stderr)  # fmt: skip
        return USER_ERROR_EXIT_CODE
    from trainpipe.console import quiet_environment

    quiet_environment()  # the training job inherits it
    log = logging.getLogger("trainpipe")
    if not log.handlers:  # the data summary and the scores, as `trainpipe train` prints its own
        log.addHandler(logging.StreamHandler(sys.stdout))
        log.setLevel(logging.INFO)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from trainpipe.runtime.signals import StopSignals

    started = time.monotonic()
    # a stop signal between stages stops at once, closing the pipeline's runs as KILLED (during
    # training it is passed on to the training job instead: pipeline/stages.py)
    signals = StopSignals()
    signals.install()
    try:
        return _run(args, started)
    except EXPECTED_FAILURES as err:
        return failure_exit(err)
    finally:
        signals.restore()


def _run(args: list[str], started: float) -> int:
    from trainpipe.pipeline.context import plan_pipeline
    from trainpipe.pipeline.runner import run_pipeline
    from trainpipe.tracking.lineage import command_line

    command = command_line(["trainpipe", "pipeline", *args])
    pipeline = plan_pipeline([a for a in args if a not in FLAGS], command)
    if "--if-data-changed" in args:
        unchanged = data_unchanged(pipeline)
        if unchanged:
            print(f"trainpipe: {unchanged}; nothing to do")
            return 0
    decision = run_pipeline(pipeline)
    _print_summary(pipeline, decision, time.monotonic() - started)
    return 0 if decision is None or decision.output["promoted"] else 1


def data_unchanged(pipeline: Any) -> str | None:
    """ "data unchanged since champion vN (…)" when the configured data's digest is the one the
    champion was trained on; None when it differs or there is no champion."""
    from trainpipe.pipeline.stages import champion_version, current_data_digest

    champion = champion_version(pipeline)
    if champion is None:
        return None
    digest = current_data_digest(pipeline)
    if champion.tags.get("dataset_digest") != digest:
        return None
    name = pipeline.model_name
    return f"data unchanged since champion v{champion.version} of {name} (digest {digest})"


def _print_summary(pipeline: Any, decision: Any, seconds: float) -> None:
    from trainpipe.pipeline.runner import ran
    from trainpipe.reports.terminal import print_summary, ui_hint

    rows: dict[str, Any] = {"pipeline run": pipeline.parent_run_id}
    for stage, entry in pipeline.results.items():
        where = f"run {entry.run_id}"
        rows[stage] = f"ran ({where})" if ran(pipeline, entry) else f"cached ({where})"
    rows["candidate"] = pipeline.output("train")["model_uri"]
    metrics = pipeline.output("evaluate")["metrics"]
    rows.update({k: round(v, 4) for k, v in sorted(metrics.items())})
    refused = decision is not None and not decision.output["promoted"]
    if decision is not None:
        promoted = f"promoted: {decision.output['message']}"
        rows["promotion"] = "refused (why: below)" if refused else promoted
        rows["champion"] = decision.output["champion_after"]
    rows["took"] = f"{seconds:.1f} s"
    rows["look at it"] = ui_hint(pipeline.conf["logger"]["tracking_uri"])
    cached = [s for s, e in pipeline.results.items() if not ran(pipeline, e)]
    title = "pipeline: every stage cached" if len(cached) == len(pipeline.results) else "pipeline"
    print(f"trainpipe: cached stages: {', '.join(cached) or 'none'}")
    print_summary(title, rows)
    if refused:
        print(refusal_text(pipeline.model_name, decision.output), file=sys.stderr)


def refusal_text(model_name: str, promoted: dict[str, Any]) -> str:
    """Why the gate refused, one wrapped item per objection, and the command that overrides it
    (as `trainpipe models promote` hints)."""
    version = promoted["version"]
    # a promote output cached before objections were recorded has only the message
    objections = promoted.get("objections") or [promoted["message"]]
    lines = [f"trainpipe: version {version} of {model_name} not promoted:"]
    for objection in objections:
        lines += textwrap.wrap(objection, 96, initial_indent="  - ", subsequent_indent="    ")
    lines.append("  promote it anyway (recorded in the audit log):")
    lines.append(f'    trainpipe models promote {model_name} --version {version} --force --reason "…"')
    return "\n".join(lines)
