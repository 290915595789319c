"""The rows of the summary a training job prints at the end (and keeps in job.json)."""

from __future__ import annotations

from typing import Any

from trainpipe.data_change import data_change
from trainpipe.fit_result import FitResult
from trainpipe.plan import JobPlan
from trainpipe.reports.terminal import ui_hint

MAX_PER_CLASS_ROWS = 12


def summary_rows(
    plan: JobPlan, job: Any, result: FitResult, registering: bool, unsent: int
) -> dict[str, Any]:
    tracker, output_dir = job.tracker, plan.output_dir
    model = None
    if registering:
        name = plan.conf["registry"]["model_name"]
        model = (
            tracker.registered_version(name) or f"models:/{name} (registered once tracking is sent)"
        )
    best = dict(result.best_metrics)
    epoch = best.pop("epoch", None)
    test = dict(result.test_metrics)
    per_class = [k for k in test if "." in k]  # test/f1.<class>, …: shown for a few classes only
    if len(per_class) > MAX_PER_CLASS_ROWS:
        for key in per_class:
            del test[key]
        test["per class"] = f"{len(per_class)} metrics in the run (test/f1.<class>, …)"
    facts = plan.task.describe_data(plan.spec).facts
    return {
        "task": f"{plan.task.name} ({plan.task_reason})",
        # what the data layer made of the data, where a task says (column kinds; pictures left out)
        "columns": facts.get("columns"),
        "left out": facts.get("left out"),
        "data changed": data_change(plan),
        "run id": tracker.run_id
        or (
            "(not tracked)"
            if not tracker.tracked
            else "(not created yet: the tracking server is unreachable)"
        ),
        "objective": result.objective,
        "best checkpoint": f"{result.best_path} (epoch {epoch})" if result.best_path else None,
        **{k: round(v, 4) for k, v in sorted(best.items())},
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in sorted(test.items())},
        "model": model,
        "output dir": str(output_dir),
        "tracking": f"{unsent} operation(s) waiting: trainpipe sync {output_dir}"
        if unsent
        else None,
        "look at it": ui_hint(tracker.tracking_uri),
    }
