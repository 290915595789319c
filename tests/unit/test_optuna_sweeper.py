"""In-process tests of the ``trainpipe_optuna`` Hydra sweeper plugin: search-space parsing (Hydra
override syntax and optuna's dict form), ``format_value`` round trips and storage URL resolution.

The tests that start a child process (the toy app sweeps, the import-without-optuna check) are in
``tests/integration/test_optuna_plugin.py``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# works both from a plain checkout and with the package pip-installed (editable)
if importlib.util.find_spec("hydra_plugins.trainpipe_optuna_sweeper") is None:
    sys.path.insert(0, str(SRC))

pytest.importorskip("optuna")
from optuna.distributions import (  # noqa: E402
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hydra_plugins.trainpipe_optuna_sweeper._space import (  # noqa: E402
    SearchSpaceError,
    format_value,
    parse_search_space,
)
from hydra_plugins.trainpipe_optuna_sweeper._study import resolve_storage_url  # noqa: E402


# --------------------------------------------------------------------------- parsing
def test_hydra_override_syntax_parses() -> None:
    space = parse_search_space(
        {
            "lr": "tag(log, interval(1e-4, 1e-1))",
            "dropout": "interval(0, 0.5)",
            "layers": "int(interval(1, 4))",
            "model": "choice(mlp, cnn)",
            "width": "range(16, 65, 16)",
            "wd": "range(0, 0.3, 0.1)",
            "act": "relu,gelu,tanh",
            "epochs": 3,
            "name": "baseline",
        }
    )
    d = space.distributions
    assert d["lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert d["dropout"] == FloatDistribution(0.0, 0.5)
    assert d["layers"] == IntDistribution(1, 4)
    assert d["model"] == CategoricalDistribution(["mlp", "cnn"])
    assert d["width"] == IntDistribution(16, 64, step=16)  # Hydra range: stop exclusive
    assert isinstance(d["wd"], FloatDistribution) and d["wd"].step == pytest.approx(0.1)
    assert d["wd"].high == pytest.approx(0.2)
    assert d["act"] == CategoricalDistribution(["relu", "gelu", "tanh"])
    assert space.fixed == {"epochs": "epochs=3", "name": "name=baseline"}
    overrides = space.overrides_for({"model": "cnn", "lr": 0.01, "layers": 2})
    assert overrides == ["epochs=3", "name=baseline", "model=cnn", "lr=0.01", "layers=2"]


def test_optuna_native_dict_form_and_command_line_precedence() -> None:
    space = parse_search_space(
        {
            "model.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "model": {"type": "categorical", "choices": ["mlp", "cnn"]},
            "batch": {"type": "int", "low": 16, "high": 64, "step": 16},
            "seed": "interval(0, 1)",
        },
        arguments=["seed=7", "+extra=a,b", "x=interval(0,1)"],
    )
    d = space.distributions
    assert d["model.optimizer.lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert d["model"] == CategoricalDistribution(["mlp", "cnn"])
    assert d["batch"] == IntDistribution(16, 64, step=16)
    assert "seed" not in d and space.fixed["seed"] == "seed=7"  # command line wins
    assert d["extra"] == CategoricalDistribution(["a", "b"])
    assert space.overrides_for({"extra": "b"}) == ["seed=7", "+extra=b"]


@pytest.mark.parametrize(
    ("params", "name", "fragment"),
    [
        ({"lr": "interval(1)"}, "lr", "end"),
        ({"lr": "tag(log, interval(0, 1))"}, "lr", "low"),
        ({"opt": {"type": "gaussian", "low": 0, "high": 1}}, "opt", "unknown type"),
        ({"lr": {"type": "float", "low": 0.1}}, "lr", "high"),
        ({"lr": {"type": "float", "low": 0, "high": 1, "scale": 2}}, "lr", "scale"),
        ({"h": "choice([1,2],[3,4])"}, "h", "scalar"),
        ({"h": [1, 2]}, "h", "choice"),
    ],
)
def test_bad_search_space_names_the_parameter(params: dict, name: str, fragment: str) -> None:
    with pytest.raises(SearchSpaceError, match=f"parameter '{name}'") as info:
        parse_search_space(params)
    assert fragment in str(info.value)


def test_format_value_round_trips_through_hydra() -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for value in ["1", "a,b", "it's", "x=y", "mlp", "a b", "", 0.1, -3, True, None, 1e-5]:
        assert parser.parse_override(f"k={format_value(value)}").value() == value
    assert format_value("1") == "'1'"  # stays a string, not an int
    assert format_value("mlp") == "mlp"
    assert format_value(True) == "true" and format_value(None) == "null"
    assert format_value(1e-5) == "1e-05"


def test_storage_url_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_storage_url(None, "sw") == f"sqlite:///{tmp_path / 'sw' / 'optuna.db'}"
    assert resolve_storage_url("journal", "sw") == f"journal:{tmp_path / 'sw' / 'optuna.journal'}"
    assert resolve_storage_url("sqlite:///a.db", "sw") == f"sqlite:///{tmp_path / 'a.db'}"
    assert resolve_storage_url("postgresql://h/db", "sw") == "postgresql://h/db"
