"""Structured config of the ``trainpipe_optuna`` sweeper.

Registered in Hydra's ConfigStore as group ``hydra/sweeper``, name
``trainpipe_optuna``; select it in a primary config with::

    defaults:
      - override /hydra/sweeper: trainpipe_optuna

and tune it under ``hydra.sweeper`` (YAML or ``hydra.sweeper.n_trials=50`` on the
command line). Imported by Hydra's plugin scanner on every run: no optuna here.
"""

# NOTE: no ``from __future__ import annotations`` here. Hydra's plugin scanner
# executes this module before registering it in sys.modules, and dataclasses then
# fail to resolve string annotations (AttributeError on sys.modules[...].__dict__).
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class PrunerConf:
    """Pruner used by jobs that report intermediate values (see ``trainpipe.hpo``)."""

    #: ``none`` (never prune), ``median`` (optuna MedianPruner) or ``hyperband``
    #: (optuna HyperbandPruner).
    type: str = "none"
    #: median: no trial is pruned until this many trials have COMPLETED.
    n_startup_trials: int = 5
    #: median: no pruning before a trial has reported this many steps.
    n_warmup_steps: int = 0
    #: median: only check for pruning every ``interval_steps`` steps.
    interval_steps: int = 1
    #: hyperband: minimum resource (steps) a trial gets before it can be pruned.
    min_resource: int = 1
    #: hyperband: maximum resource (steps) of a trial, or ``auto`` to infer it
    #: from the first completed trial.
    max_resource: Any = "auto"
    #: hyperband: reduction factor between successive-halving rungs.
    reduction_factor: int = 3


@dataclass
class OptunaSweeperConf:
    """Options of the Optuna sweeper (``hydra.sweeper.*``)."""

    _target_: str = "hydra_plugins.trainpipe_optuna_sweeper.sweeper.TrainpipeOptunaSweeper"

    #: Optuna sampler: ``tpe`` (TPESampler) or ``random`` (RandomSampler).
    sampler: str = "tpe"
    #: Sampler seed, or null for a non-reproducible sweep. When a study is
    #: resumed, ``seed + <number of trials already in the study>`` is used so that
    #: the resumed run does not replay the random draws of the first run.
    seed: int | None = None
    #: ``minimize`` or ``maximize`` the value returned by the task function.
    direction: str = "minimize"
    #: Total number of finished trials wanted *in the study*: trials already
    #: COMPLETE, PRUNED or FAIL from an earlier (interrupted) run of the same
    #: study count; trials that were interrupted before producing a result do not.
    n_trials: int = 20
    #: Number of trials asked from optuna and sent to the launcher as one batch
    #: (run in parallel by parallel launchers such as joblib/submitit).
    n_jobs: int = 1
    #: Study name; null uses the Hydra job name (``hydra.job.name``), which is
    #: stable across re-runs so that a re-run with the same storage continues.
    study_name: str | None = None
    #: Where the study lives. null: ``sqlite:///<hydra.sweep.dir>/optuna.db``;
    #: ``journal``: an optuna JournalStorage file ``<hydra.sweep.dir>/optuna.journal``;
    #: ``journal:<path>``: a JournalStorage file at <path>; anything else is an
    #: SQLAlchemy URL for optuna's RDBStorage (relative sqlite paths are made
    #: absolute against the directory the sweep was started from).
    storage: str | None = None
    #: Search space, ``{override key: spec}``. A spec is either Hydra override
    #: syntax (``interval(0,1)``, ``int(interval(1,8))``, ``tag(log,interval(1e-4,1e-1))``,
    #: ``choice(a,b)``, ``range(1,10,2)``, ``a,b,c``, or a single fixed value) or an
    #: optuna-style mapping ``{type: float|int|categorical, low:, high:, log:, step:,
    #: choices:}``. Sweep overrides on the command line are added to (and win over)
    #: these entries.
    params: dict[str, Any] | None = field(default_factory=dict)
    #: Pruner used when jobs report intermediate values.
    pruner: PrunerConf = field(default_factory=PrunerConf)
    #: Name of the objective, recorded in the study user attrs and in
    #: ``optimization_results.yaml`` only.
    metric_name: str = "objective"
    #: Top-level key under which each job's config receives
    #: ``{number, study_name, storage, pruner}`` of its trial (force-added with a
    #: ``++<trial_key>=...`` override). ``trial.current_trial(cfg)`` reads it.
    trial_key: str = "optuna_trial"


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="trainpipe_optuna",
    node=OptunaSweeperConf,
    provider="trainpipe",
)
