"""The job side of the ``trainpipe_optuna`` sweeper: which trial a job evaluates (public API).

The sweeper force-adds the identity of the trial a job evaluates to the job's
config (``++optuna_trial={...}``)::

    optuna_trial:
      number: 7                      # optuna trial number
      study_name: train              # study in ...
      storage: sqlite:////abs/multirun/.../optuna.db   # ... this storage URL
      pruner: {type: median, n_startup_trials: 5, ...} # hydra.sweeper.pruner

so it reaches the job with any launcher (basic, joblib, submitit). In the task::

    from hydra_plugins.trainpipe_optuna_sweeper import trial as hpo

    trial = hpo.current_trial(cfg)          # None outside an optuna sweep
    for epoch in range(n_epochs):
        val_loss = ...
        if trial is not None:
            trial.report(val_loss, step=epoch)
            if trial.should_prune():
                trial.prune()               # raises optuna.TrialPruned
    return val_loss                         # the objective

A pruned job may also ``return hpo.PRUNED`` instead of raising. Either way the
sweeper records the trial as PRUNED (with the last reported value). optuna is
only imported when a handle is first used, never at import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from hydra_plugins.trainpipe_optuna_sweeper.protocol import DEFAULT_TRIAL_KEY, PRUNED

if TYPE_CHECKING:
    import optuna

__all__ = ["PRUNED", "TrialHandle", "current_trial"]


class TrialHandle:
    """The running optuna trial of this job, opened lazily from the study storage."""

    def __init__(
        self,
        number: int,
        study_name: str,
        storage: str,
        pruner: Mapping[str, Any] | None = None,
    ) -> None:
        self.number = int(number)
        self.study_name = str(study_name)
        self.storage = str(storage)
        self.pruner_spec: dict[str, Any] = dict(pruner or {})
        self._trial: optuna.trial.Trial | None = None

    def __repr__(self) -> str:
        return f"TrialHandle(number={self.number}, study_name={self.study_name!r})"

    @property
    def trial(self) -> optuna.trial.Trial:
        """The ``optuna.trial.Trial`` (opens the study on first access)."""
        if self._trial is None:
            import optuna

            from hydra_plugins.trainpipe_optuna_sweeper._study import make_pruner, open_storage

            storage = open_storage(self.storage)
            study = optuna.load_study(
                study_name=self.study_name,
                storage=storage,
                # sampling happened in the sweeper; a RandomSampler is the cheapest no-op
                sampler=optuna.samplers.RandomSampler(),
                pruner=make_pruner(self.pruner_spec),
            )
            study_id = storage.get_study_id_from_name(self.study_name)
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.number)
            self._trial = optuna.trial.Trial(study, trial_id)
        return self._trial

    @property
    def params(self) -> dict[str, Any]:
        """Parameters the sweeper sampled for this trial."""
        return dict(self.trial.params)

    def report(self, value: float, step: int) -> None:
        """Store an intermediate objective value for ``step`` (used by the pruner)."""
        self.trial.report(float(value), int(step))

    def should_prune(self) -> bool:
        """Ask the configured pruner whether this trial should stop now."""
        return bool(self.trial.should_prune())

    def prune(self, message: str | None = None) -> NoReturn:
        """Stop the job as pruned: raises ``optuna.TrialPruned``."""
        import optuna

        raise optuna.TrialPruned(message or f"trial {self.number} pruned")

    def set_user_attr(self, key: str, value: Any) -> None:
        """Attach a JSON-serialisable value to the trial in the study storage."""
        self.trial.set_user_attr(key, value)


def current_trial(cfg: Any, key: str = DEFAULT_TRIAL_KEY) -> TrialHandle | None:
    """Handle on the trial this job evaluates, or None when not run by the sweeper.

    ``cfg`` is the task config (DictConfig or plain mapping); ``key`` must match
    ``hydra.sweeper.trial_key`` (default ``optuna_trial``).
    """
    from omegaconf import DictConfig, OmegaConf

    node = cfg.get(key) if isinstance(cfg, Mapping) else None
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    if not isinstance(node, Mapping) or node.get("number") is None:
        return None
    return TrialHandle(
        number=node["number"],
        study_name=node["study_name"],
        storage=node["storage"],
        pruner=node.get("pruner"),
    )
