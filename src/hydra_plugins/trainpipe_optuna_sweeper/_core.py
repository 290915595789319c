"""The sweep loop: study set-up/resume, ask -> launch -> tell, results file.

Private module (skipped by Hydra's plugin scanner): it imports optuna.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.trial import TrialState

from ._space import SearchSpace, format_value, parse_search_space
from ._study import make_pruner, make_sampler, open_storage, resolve_storage_url
from .protocol import FAIL_REASON_ATTR, INTERRUPTED_ATTR, PRUNED, WORKING_DIR_ATTR

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from .sweeper import TrainpipeOptunaSweeper

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"


def counts_against_budget(trial: optuna.trial.FrozenTrial) -> bool:
    """COMPLETE, PRUNED and FAIL (the job ran and failed) trials use up ``n_trials``.

    A FAIL that only marks an interrupted trial (killed sweep, launcher error) does
    not: it never produced a result and is re-run. Counting real failures keeps a
    deterministically crashing job from looping forever.
    """
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and not trial.user_attrs.get(INTERRUPTED_ATTR)


def _objective(value: Any) -> float | None:
    """The job's return value as a float; None if it is not a usable number."""
    if value is None or isinstance(value, (bool, str, bytes)):
        return None
    try:
        result = float(value)  # int/float, numpy scalars, 0-d / 1-element tensors
    except (TypeError, ValueError, RuntimeError):
        return None
    return None if math.isnan(result) else result


_PRUNER_OPTIONS = {
    "none": (),
    "median": ("n_startup_trials", "n_warmup_steps", "interval_steps"),
    "hyperband": ("min_resource", "max_resource", "reduction_factor"),
}


def _pruner_spec(pruner: dict[str, Any]) -> dict[str, Any]:
    """Only the options relevant to the pruner type (keeps job overrides short)."""
    kind = pruner.get("type", "none")
    return {"type": kind, **{k: pruner[k] for k in _PRUNER_OPTIONS[kind] if k in pruner}}


class _SweepRun:
    def __init__(self, sweeper: TrainpipeOptunaSweeper) -> None:
        assert sweeper.config is not None and sweeper.launcher is not None
        assert sweeper.hydra_context is not None
        self.sw = sweeper
        cfg = sweeper.config
        self.sweep_dir = Path(str(cfg.hydra.sweep.dir)).absolute()
        self.url = resolve_storage_url(sweeper.storage, self.sweep_dir)
        self.storage: BaseStorage  # opened in run(), once the search space is valid
        self.study_name = str(sweeper.study_name or cfg.hydra.job.name)

    # -- study set-up ---------------------------------------------------------
    def open_study(self) -> optuna.Study:
        sw = self.sw
        study = optuna.create_study(
            storage=self.storage,
            study_name=self.study_name,
            direction=sw.direction,
            load_if_exists=True,
            sampler=optuna.samplers.RandomSampler(),  # replaced below
            pruner=make_pruner(sw.pruner),
        )
        if study.direction.name.lower() != sw.direction:
            raise ValueError(
                f"Study '{self.study_name}' in {self.url} was created with direction "
                f"{study.direction.name.lower()}, but hydra.sweeper.direction={sw.direction}"
            )
        self._fail_interrupted(study)
        n_existing = len(study.get_trials(deepcopy=False))
        # a resumed run must not replay the random draws of the first run
        seed = None if sw.seed is None else sw.seed + n_existing
        study.sampler = make_sampler(sw.sampler, seed)
        study.set_user_attr("metric_name", sw.metric_name)
        return study

    def _fail_interrupted(self, study: optuna.Study) -> None:
        """Trials left RUNNING by a killed sweep -> FAIL, flagged as not counting.

        Assumes one sweeper process per study (it cannot tell a dead sweeper's
        trial from one that another live sweeper is running).
        """
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if running:
            log.warning(
                "Study '%s': marking %d trial(s) left RUNNING by an interrupted sweep as "
                "FAIL (not counted, they will be re-run): %s",
                self.study_name,
                len(running),
                [t.number for t in running],
            )
            self._mark_interrupted(study, [t.number for t in running])

    def _mark_interrupted(self, study: optuna.Study, numbers: list[int]) -> None:
        study_id = self.storage.get_study_id_from_name(self.study_name)
        for number in numbers:
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, number)
            if self.storage.get_trial(trial_id).state.is_finished():
                continue
            self.storage.set_trial_user_attr(trial_id, INTERRUPTED_ATTR, True)
            self.storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, "sweep interrupted")
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)

    # -- per-trial plumbing -----------------------------------------------------
    def trial_override(self, number: int) -> str:
        """``++<trial_key>={...}``: force-add works whether or not the key exists."""
        info = {
            "number": number,
            "study_name": self.study_name,
            "storage": self.url,
            "pruner": _pruner_spec(self.sw.pruner),
        }
        return f"++{self.sw.trial_key}={format_value(info)}"

    def tell(self, study: optuna.Study, trial: optuna.Trial, ret: JobReturn) -> TrialState:
        if ret.working_dir:
            trial.set_user_attr(WORKING_DIR_ATTR, str(ret.working_dir))
        raw = ret._return_value  # .return_value would re-raise a job's exception
        if ret.status == JobStatus.COMPLETED:
            if isinstance(raw, str) and raw == PRUNED:
                return self._finish(study, trial, TrialState.PRUNED)
            value = _objective(raw)
            if value is not None:
                return self._finish(study, trial, TrialState.COMPLETE, value)
            reason = f"job returned {raw!r}, not a number"
            log.warning("Trial %d failed: %s", trial.number, reason)
        elif isinstance(raw, optuna.TrialPruned):
            return self._finish(study, trial, TrialState.PRUNED)
        else:
            reason = f"{type(raw).__name__}: {raw}"
            exc = raw if isinstance(raw, BaseException) else None
            log.warning("Trial %d failed: %s", trial.number, reason, exc_info=exc)
        trial.set_user_attr(FAIL_REASON_ATTR, reason[:1000])
        return self._finish(study, trial, TrialState.FAIL)

    def _finish(
        self,
        study: optuna.Study,
        trial: optuna.Trial,
        state: TrialState,
        value: float | None = None,
    ) -> TrialState:
        frozen = study.tell(trial, value, state=state, skip_if_finished=True)
        log.info(
            "Trial %d %s value=%s params=%s",
            trial.number,
            frozen.state.name,
            frozen.value,
            trial.params,
        )
        return frozen.state

    # -- main loop --------------------------------------------------------------
    def run(self, arguments: list[str]) -> dict[str, Any]:
        sw = self.sw
        assert sw.config is not None and sw.launcher is not None
        assert sw.hydra_context is not None
        space = parse_search_space(sw.params, arguments, sw.hydra_context.config_loader)
        if not space.distributions:
            log.warning("Empty search space: every trial runs the same configuration")
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        self.storage = open_storage(self.url)
        OmegaConf.save(sw.config, self.sweep_dir / "multirun.yaml")

        study = self.open_study()
        trials = study.get_trials(deepcopy=False)
        done = sum(counts_against_budget(t) for t in trials)
        job_idx = len(trials)  # new job dirs never collide with an earlier run's
        log.info(
            "Optuna study '%s' (%s): %d/%d trials already finished, storage %s",
            self.study_name,
            sw.direction,
            done,
            sw.n_trials,
            self.url,
        )
        while done < sw.n_trials:
            n = min(sw.n_jobs, sw.n_trials - done)
            asked = [study.ask(space.distributions) for _ in range(n)]
            batch = [[*space.overrides_for(t.params), self.trial_override(t.number)] for t in asked]
            try:
                sw.validate_batch_is_legal(batch)
                results = list(sw.launcher.launch(batch, initial_job_idx=job_idx))
                if len(results) != n:
                    raise RuntimeError(f"launcher returned {len(results)} results for {n} jobs")
            except BaseException:
                try:
                    self._mark_interrupted(study, [t.number for t in asked])
                except Exception:  # never mask the original error
                    log.exception(
                        "Could not mark trials %s as interrupted", [t.number for t in asked]
                    )
                raise
            for trial, ret in zip(asked, results, strict=True):
                self.tell(study, trial, ret)
            job_idx += n
            done += n
        return self.write_results(study, space)

    def write_results(self, study: optuna.Study, space: SearchSpace) -> dict[str, Any]:
        trials = study.get_trials(deepcopy=False)
        states = Counter(t.state.name.lower() for t in trials)
        states["interrupted"] = sum(bool(t.user_attrs.get(INTERRUPTED_ATTR)) for t in trials)
        result: dict[str, Any] = {
            "name": "optuna",
            "study_name": self.study_name,
            "storage": self.url,
            "direction": self.sw.direction,
            "metric_name": self.sw.metric_name,
            "best_trial": None,
            "best_value": None,
            "best_params": {},
            "best_overrides": [],
            "trials": dict(states),
        }
        if states["complete"]:
            best = study.best_trial
            result["best_trial"] = best.number
            result["best_value"] = best.value
            result["best_params"] = dict(best.params)
            result["best_overrides"] = space.overrides_for(best.params)
            log.info("Best trial %d: value=%s params=%s", best.number, best.value, best.params)
        else:
            log.warning("Study '%s' has no COMPLETE trial: no best value", self.study_name)
        OmegaConf.save(OmegaConf.create(result), self.sweep_dir / RESULTS_FILE)
        return result


def run_sweep(sweeper: TrainpipeOptunaSweeper, arguments: list[str]) -> dict[str, Any]:
    return _SweepRun(sweeper).run(arguments)
