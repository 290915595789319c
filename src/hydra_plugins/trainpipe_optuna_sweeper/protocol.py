"""Names shared by the sweeper process and the jobs it launches (public: jobs import it).

Kept free of optuna (and of any heavy import) so that both sides can import it
at module level.
"""

#: Default top-level key of the job config under which the sweeper puts the
#: identity of the trial a job evaluates (see ``OptunaSweeperConf.trial_key``).
DEFAULT_TRIAL_KEY = "optuna_trial"

#: A job may return this string instead of raising ``optuna.TrialPruned`` to
#: have its trial recorded as PRUNED (a plain string survives pickling by any
#: launcher).
PRUNED = "__trainpipe_optuna_pruned__"

#: Trial user attribute set on trials that never produced a result because the
#: sweep was interrupted (killed process, launcher error, Ctrl-C). Such trials are
#: stored as FAIL but do not count against ``n_trials``, so they get re-run.
INTERRUPTED_ATTR = "trainpipe_interrupted"

#: Trial user attribute holding a one-line reason for a FAIL state.
FAIL_REASON_ATTR = "fail_reason"

#: Trial user attribute holding the Hydra working directory of the job.
WORKING_DIR_ATTR = "working_dir"
