"""The Hydra ``Sweeper`` plugin class (discovered by Hydra's plugin scanner).

Only option validation happens here; optuna is imported when ``sweep()`` runs
(see ``_core.py``), so merely having this plugin installed does not slow down
every Hydra app start-up.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from .protocol import DEFAULT_TRIAL_KEY

SAMPLERS = ("tpe", "random")
DIRECTIONS = ("minimize", "maximize")
PRUNERS = ("none", "median", "hyperband")


def _container(value: Any) -> Any:
    if isinstance(value, DictConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


class TrainpipeOptunaSweeper(Sweeper):
    """Sample trials with Optuna ask-and-tell and run them through Hydra's launcher.

    After :meth:`sweep` returns, :attr:`best_value`, :attr:`best_params` and
    :attr:`result` (the dict also written to ``optimization_results.yaml``) hold the
    outcome so that a caller can log it.
    """

    def __init__(
        self,
        sampler: str = "tpe",
        seed: int | None = None,
        direction: str = "minimize",
        n_trials: int = 20,
        n_jobs: int = 1,
        study_name: str | None = None,
        storage: str | None = None,
        params: Any = None,
        pruner: Any = None,
        metric_name: str = "objective",
        trial_key: str = DEFAULT_TRIAL_KEY,
    ) -> None:
        super().__init__()
        self.sampler = str(sampler).lower()
        self.direction = str(direction).lower()
        self.pruner: dict[str, Any] = dict(_container(pruner) or {})
        pruner_type = str(self.pruner.get("type") or "none").lower()
        self.pruner["type"] = pruner_type
        if self.sampler not in SAMPLERS:
            raise ValueError(f"hydra.sweeper.sampler={sampler!r}: expected one of {SAMPLERS}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"hydra.sweeper.direction={direction!r}: expected one of {DIRECTIONS}")
        if pruner_type not in PRUNERS:
            raise ValueError(
                f"hydra.sweeper.pruner.type={pruner_type!r}: expected one of {PRUNERS}"
            )
        if int(n_trials) < 1 or int(n_jobs) < 1:
            raise ValueError(
                f"hydra.sweeper.n_trials ({n_trials}) and n_jobs ({n_jobs}) must be >= 1"
            )
        if not trial_key or "." in trial_key:
            raise ValueError(f"hydra.sweeper.trial_key={trial_key!r}: must be a top-level key")
        self.seed = None if seed is None else int(seed)
        self.n_trials = int(n_trials)
        self.n_jobs = int(n_jobs)
        self.study_name = study_name
        self.storage = storage
        self.params = _container(params) or {}
        self.metric_name = str(metric_name)
        self.trial_key = str(trial_key)

        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None

        self.best_value: float | None = None
        self.best_params: dict[str, Any] = {}
        self.result: dict[str, Any] | None = None

    def setup(
        self,
        *,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        config: DictConfig,
    ) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> dict[str, Any]:
        """Run (or continue) the study; returns the results dict (best value/params)."""
        try:
            from ._core import run_sweep
        except ImportError as e:  # optuna missing or too old (< 4)
            raise ImportError(
                f"The trainpipe_optuna sweeper needs optuna>=4 ({e}); pip install 'optuna>=4'"
            ) from e

        self.result = run_sweep(self, list(arguments))
        self.best_value = self.result.get("best_value")
        self.best_params = dict(self.result.get("best_params") or {})
        return self.result
