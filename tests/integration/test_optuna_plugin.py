"""End-to-end tests of the ``trainpipe_optuna`` Hydra sweeper plugin, each in a subprocess.

The sweeps run the toy app ``optuna_app/my_app.py`` with ``--multirun``, with real optuna and a
real sqlite (or journal) study storage: grid batches, resuming an interrupted sweep, pruning from
the job, failing trials, journal storage. One more checks that the plugin and its public ``trial``
module import without optuna. The in-process tests are in ``tests/unit/test_optuna_sweeper.py``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
APP = Path(__file__).resolve().parent / "optuna_app" / "my_app.py"

# works both from a plain checkout and with the package pip-installed (editable)
if importlib.util.find_spec("hydra_plugins.trainpipe_optuna_sweeper") is None:
    sys.path.insert(0, str(SRC))

optuna = pytest.importorskip("optuna")
from omegaconf import OmegaConf  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from hydra_plugins.trainpipe_optuna_sweeper.protocol import INTERRUPTED_ATTR  # noqa: E402

STUDY = "my_app"  # default study name = hydra.job.name


# --------------------------------------------------------------------------- helpers
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", MLFLOW_DISABLE_TELEMETRY="true")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return env


def run_app(tmp_path: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    sweep_dir = tmp_path / "sweep"
    cmd = [sys.executable, str(APP), "--multirun", f"hydra.sweep.dir={sweep_dir}", *overrides]
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120
    )
    if check and proc.returncode != 0:
        pytest.fail(f"app failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def load_trials(tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(
        study_name=STUDY, storage=f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}"
    )
    return study.get_trials()


def states(trials: list[optuna.trial.FrozenTrial]) -> dict[int, TrialState]:
    return {t.number: t.state for t in trials}


def load_results(tmp_path: Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml"))


# --------------------------------------------------------------------------- import
def test_plugin_and_hpo_import_without_optuna() -> None:
    code = (
        "import sys\n"
        "from hydra.core.plugins import Plugins\n"
        "from hydra.plugins.sweeper import Sweeper\n"
        "names = [c.__name__ for c in Plugins.instance().discover(Sweeper)]\n"
        "assert 'TrainpipeOptunaSweeper' in names, names\n"
        "from hydra_plugins.trainpipe_optuna_sweeper import trial as hpo\n"
        "assert hpo.current_trial({'x': 1}) is None\n"
        "assert 'optuna' not in sys.modules\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- end-to-end
@pytest.mark.slow
def test_grid_sweep_in_batches(tmp_path: Path) -> None:
    run_app(tmp_path, "x=choice(0,2)", "y=0,1", "hydra.sweeper.n_jobs=2")
    trials = load_trials(tmp_path)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    best = min(trials, key=lambda t: t.value)
    results = load_results(tmp_path)
    assert results["best_value"] == pytest.approx(best.value)
    assert results["best_params"] == best.params
    x, y = results["best_params"]["x"], results["best_params"]["y"]
    assert results["best_value"] == pytest.approx((x - 1) ** 2 + (y - 0.5) ** 2)
    assert results["metric_name"] == "toy_loss"
    for n in range(4):  # one Hydra job dir per trial, job num == trial number
        overrides = OmegaConf.load(tmp_path / "sweep" / str(n) / ".hydra" / "overrides.yaml")
        assert any(o.startswith("++optuna_trial={number:" + str(n)) for o in overrides)


@pytest.mark.slow
def test_interrupted_sweep_resumes(tmp_path: Path) -> None:
    first = run_app(tmp_path, "die_on_trial=2", check=False)
    assert first.returncode == 17, first.stderr
    assert states(load_trials(tmp_path)) == {
        0: TrialState.COMPLETE,
        1: TrialState.COMPLETE,
        2: TrialState.RUNNING,
    }
    run_app(tmp_path)
    trials = load_trials(tmp_path)
    assert states(trials) == {
        0: TrialState.COMPLETE,
        1: TrialState.COMPLETE,
        2: TrialState.FAIL,
        3: TrialState.COMPLETE,
        4: TrialState.COMPLETE,
    }
    assert trials[2].user_attrs[INTERRUPTED_ATTR] is True
    # a resumed run must not replay the first run's random draws
    assert trials[3].params["x"] != trials[0].params["x"]
    results = load_results(tmp_path)
    assert results["trials"]["complete"] == 4 and results["trials"]["interrupted"] == 1


@pytest.mark.slow
def test_pruning_from_the_job(tmp_path: Path) -> None:
    run_app(
        tmp_path,
        "prune_steps=3",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.pruner.type=median",
        "hydra.sweeper.pruner.n_startup_trials=1",
    )
    trials = load_trials(tmp_path)
    # trial 1 raises optuna.TrialPruned, trial 2 returns hpo.PRUNED
    assert states(trials) == {0: TrialState.COMPLETE, 1: TrialState.PRUNED, 2: TrialState.PRUNED}
    assert trials[1].intermediate_values == {0: 20.0}
    assert trials[2].value == 30.0  # last reported intermediate value


@pytest.mark.slow
def test_failing_trials_do_not_stop_the_sweep(tmp_path: Path) -> None:
    run_app(tmp_path, "raise_on_trial=1", "nan_on_trial=2")
    trials = load_trials(tmp_path)
    assert states(trials) == {
        0: TrialState.COMPLETE,
        1: TrialState.FAIL,
        2: TrialState.FAIL,
        3: TrialState.COMPLETE,
    }
    assert "toy failure" in trials[1].user_attrs["fail_reason"]
    assert "nan" in trials[2].user_attrs["fail_reason"]
    assert load_results(tmp_path)["best_trial"] in (0, 3)


@pytest.mark.slow
def test_journal_storage(tmp_path: Path) -> None:
    run_app(tmp_path, "hydra.sweeper.storage=journal", "hydra.sweeper.n_trials=2")
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = tmp_path / "sweep" / "optuna.journal"
    study = optuna.load_study(
        study_name=STUDY, storage=JournalStorage(JournalFileBackend(str(path)))
    )
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 2
    assert load_results(tmp_path)["storage"] == f"journal:{path}"
