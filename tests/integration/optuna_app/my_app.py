"""Toy Hydra app whose return value is a quadratic of x and y (used by the sweeper tests)."""

from __future__ import annotations

import os

import hydra
from omegaconf import DictConfig

from hydra_plugins.trainpipe_optuna_sweeper import trial as hpo


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg: DictConfig) -> float | str:
    trial = hpo.current_trial(cfg)
    number = trial.number if trial is not None else -1
    if cfg.die_on_trial is not None and number == cfg.die_on_trial:
        os._exit(17)  # simulate a killed sweep: no cleanup, trial stays RUNNING
    if cfg.raise_on_trial is not None and number == cfg.raise_on_trial:
        raise ValueError(f"toy failure in trial {number}")
    if cfg.nan_on_trial is not None and number == cfg.nan_on_trial:
        return float("nan")
    value = (float(cfg.x) - 1.0) ** 2 + (float(cfg.y) - 0.5) ** 2
    for step in range(int(cfg.prune_steps)):
        assert trial is not None
        # later trials are worse at every step, so a median pruner must prune them
        trial.report(10.0 * (number + 1) + step, step)
        if trial.should_prune():
            if number % 2:
                trial.prune()
            return hpo.PRUNED
    return value


if __name__ == "__main__":
    main()
