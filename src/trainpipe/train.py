"""`trainpipe train`: seed → build → fit (resuming if needed) → test the best → register.

The plan (plan.py) has already validated the config, picked the task and prepared the data; the
job (runtime/job.py) owns the output dir's state, the tracker and what happens on failure. What
is left is the training itself, readable top to bottom.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from trainpipe.config.secrets import masked_config
from trainpipe.data_change import identity
from trainpipe.fit_result import FitResult
from trainpipe.plan import JobPlan
from trainpipe.registration import register
from trainpipe.reports.summary import summary_rows
from trainpipe.reports.terminal import print_config_tree, print_summary
from trainpipe.run_log import log_best, log_lineage, make_tracker, run_params, run_tags
from trainpipe.runtime.job import Job
from trainpipe.runtime.resume import archive_previous_attempt, resume_point
from trainpipe.runtime.signals import StopSignals
from trainpipe.tracking.sweep import OBJECTIVE_METRIC_TAG, OBJECTIVE_TAG


def run(plan: JobPlan) -> float | None:
    """Train one job as planned (`plan.config`). Returns the optimized metric (what a sweeper
    optimises)."""
    conf, task = plan.conf, plan.task
    signals = StopSignals(tuple(conf["preemption"]["signals"]))
    job = Job(plan.output_dir, make_tracker(plan.config), signals, conf["preemption"]["requeue"])
    if job.is_complete and conf["resume"] == "auto":
        print_summary(
            f"{plan.run_name} is already complete (resume=never trains again)", job.state.summary
        )
        return job.state.summary.get("objective")
    if conf["resume"] == "never" and job.rank_zero:
        archive_previous_attempt(plan.output_dir)
    if conf["print_config"] and job.rank_zero:
        print_config_tree(masked_config(conf))

    import lightning as L

    from trainpipe.assemble import build_trainer

    with job:
        L.seed_everything(conf["seed"], workers=True, verbose=False)
        module = task.build_module(plan.config.model, plan.spec)
        datamodule = task.datamodule(plan.prepared, conf["data"])
        model_fingerprint = plan.model_fingerprint
        start_from = resume_point(conf["resume"], plan.output_dir, model_fingerprint)
        # the recorded config with any URI password masked (config/secrets.py), as params are
        recorded = OmegaConf.to_yaml(masked_config(conf))
        run_id = job.start(plan.run_name, run_tags(plan), run_params(conf), recorded)
        log_lineage(plan, job.tracker)
        trainer = build_trainer(plan, job, run_id, model_fingerprint)
        trainer.fit(
            module,
            datamodule=datamodule,
            ckpt_path=str(start_from) if start_from else None,
            weights_only=True,  # what runtime/checkpoint_io.py loads with anyway: nothing unpickled
        )
        result = FitResult.of(trainer, conf["optimized_metric"])
        log_best(plan, job.tracker, result, trainer.global_step)
        if conf["test_after_fit"]:
            result.test(trainer, module, datamodule)
        registering = job.rank_zero and register(plan, job.tracker, module, result)
        if result.objective is not None:
            metric = f"{conf['optimized_metric']} {conf['optimized_mode']}"
            job.tracker.set_tags(
                {OBJECTIVE_TAG: repr(result.objective), OBJECTIVE_METRIC_TAG: metric}
            )
        unsent = job.finish()
        summary = summary_rows(plan, job, result, registering, unsent)
        job.complete(summary, identity(plan))
    if job.rank_zero:
        print_summary(f"trained {plan.run_name}", summary)
    return result.objective
