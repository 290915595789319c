"""`trainpipe eval`: score a checkpoint or a registered model on a test split; log an evaluation run.

`model_uri` is a checkpoint path (loaded weights-only), `models:/NAME/VERSION` or `models:/NAME@ALIAS`
(loaded through MLflow's pyfunc, pickle-free). Without a `data` choice the model is scored on the
data it was trained on (its training config travels in its checkpoint and its MLflow run).
"""

from __future__ import annotations

from trainpipe.plan import JobPlan
from trainpipe.reports.terminal import print_summary, ui_hint
from trainpipe.tracking.lineage import RUN_TYPE_TAG, git_tags, versions
from trainpipe.tracking.params import flatten


def run(plan: JobPlan) -> float:
    import torch
    from hydra.utils import instantiate

    conf, task = plan.conf, plan.task
    device = (
        conf["device"]
        if conf["device"] != "auto"
        else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    task.check_compatible(plan.predictor, plan.prepared)
    batch_size = conf["data"]["batch_size"]
    metrics = task.evaluate(plan.predictor, plan.prepared, batch_size, device)

    tracker = instantiate(plan.config.logger)
    tags = {
        RUN_TYPE_TAG: "eval",
        "trainpipe.model_uri": conf["model_uri"],
        "trainpipe.task": task.name,
        "trainpipe.data.digest": plan.prepared.digest,
        "trainpipe.data.split_digest": plan.prepared.split_digest,
        **git_tags(),
        **versions(),
    }
    run_id = tracker.start(plan.run_name, tags, journal_dir=plan.output_dir / "tracking")
    tracker.log_params(flatten({k: v for k, v in conf.items() if k != "paths"}, drop_private=True))
    tracker.log_metrics(metrics, step=0)
    tracker.finish("FINISHED")
    print_summary(
        f"evaluated {conf['model_uri']}",
        {
            "run id": run_id,
            "data": f"{plan.prepared.source} (test split, {plan.prepared.split_sizes()['test']} rows)",
            **{k: round(v, 4) for k, v in metrics.items()},
            "look at it": ui_hint(tracker.tracking_uri),
        },
    )
    return metrics.get(task.objective.test_metric, next(iter(metrics.values())))
