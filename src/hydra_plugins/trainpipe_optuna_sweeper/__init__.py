"""Hydra sweeper plugin that drives the sweep with Optuna (>= 4) ask-and-tell.

Select it with ``defaults: - override /hydra/sweeper: trainpipe_optuna``; the
options are documented on :class:`.config.OptunaSweeperConf`.

This package is imported by Hydra's plugin scanner at the start of *every*
Hydra app, so it must stay cheap: nothing here (nor in ``config.py`` or
``sweeper.py``) imports optuna at module level. The optuna-dependent code lives
in the ``_``-prefixed modules, which the scanner skips and which are imported
lazily when a sweep actually starts. Jobs use the public ``trial`` module (which
trial am I, report, prune) and ``protocol`` (the names both sides share).
"""

__version__ = "0.1.0"
