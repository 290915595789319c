"""The CLI as a user meets it: help and config questions answered without the heavy stack, and
config mistakes stopped with one line, exit 2 and nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env, run_cli

HEAVY = ("torch", "lightning", "mlflow", "datasets")

PROBE = """
import sys
from trainpipe.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
else:
    code = 0
heavy = [m for m in {heavy!r} if m in sys.modules]
print("HEAVY=" + ",".join(heavy), "CODE=" + str(code), file=sys.stderr)
"""


def heavy_modules_after(args: list[str], cwd: Path) -> tuple[str, str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    last = result.stderr.strip().splitlines()[-1]
    return last, result.stdout


def test_help_imports_no_heavy_module(workdir: Path) -> None:
    line, out = heavy_modules_after(["--help"], workdir)
    assert line == "HEAVY= CODE=0"
    assert "trainpipe train" in out and "eval" in out


def test_cfg_job_prints_config_without_heavy_imports(workdir: Path) -> None:
    line, out = heavy_modules_after(["train", "--cfg", "job", "model=cnn"], workdir)
    assert line == "HEAVY= CODE=0"
    assert "trainpipe.tasks.tabular.nets.CNN" in out
    assert not (workdir / "outputs").exists()


def test_config_error_imports_no_heavy_module(workdir: Path) -> None:
    line, _ = heavy_modules_after(["train", "trainer.max_epochs=0"], workdir)
    assert line == "HEAVY= CODE=2"
    # a task's own rule (Task.validate): a CNN needs image-shaped data
    line, _ = heavy_modules_after(["train", "model=cnn", "data.image_shape=null"], workdir)
    assert line == "HEAVY= CODE=2"
    # trainpipe predict: a bad output or a missing input file, before the model is loaded
    predict = ["predict", "model_uri=models:/rows@champion", "data.path=rows.parquet"]
    line, _ = heavy_modules_after([*predict, "output=scores.xlsx"], workdir)
    assert line == "HEAVY= CODE=2"
    line, _ = heavy_modules_after([*predict, "output=scores.parquet"], workdir)  # no rows.parquet
    assert line == "HEAVY= CODE=2"


def test_python_dash_m_and_console_script_agree(workdir: Path) -> None:
    result = run_cli(["--version"], cwd=workdir)
    assert result.returncode == 0 and result.stdout.startswith("trainpipe ")
    script = Path(sys.executable).with_name("trainpipe")  # installed by `pip install -e .`
    assert script.exists()
    console = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert console.stdout == result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "model.optimizer.lr=0"], "model.optimizer.lr"),
        (["train", "+trainer.max_epoch=3"], "trainer.max_epoch"),
        (["train", "trainer.max_epoch=3"], "did you mean `trainer.max_epochs`?"),
        (["train", "model=mpl"], "model: unknown option 'mpl'; did you mean `model=mlp`?"),
        (["train", "data=csv", "data.path=x.csv"], "data.target: is required"),
        (["train", "model=transformer"], "model"),
        (["train", "data=csv", "data.target=y"], "data.path"),
        (["train", "data.batch_size=-4"], "data.batch_size"),
        (["eval"], "model_uri"),
    ],
)
def test_cli_config_error_exits_2_and_leaves_nothing(
    empty_workdir: Path, args: list[str], needle: str
) -> None:
    result = run_cli(args, cwd=empty_workdir)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (
        sorted(p.name for p in empty_workdir.iterdir()) == []
    )  # no outputs/, no mlflow.db, no cache


def test_unknown_command_exits_2(workdir: Path) -> None:
    result = run_cli(["trian"], cwd=workdir)
    assert result.returncode == 2
    assert "unknown command 'trian'" in result.stderr


def test_the_command_imports_no_torch(tmp_path: Path) -> None:
    code = (
        "import sys; from trainpipe.commands.estimate import main; "
        "main(['experiment=gpt2_124m']); "
        "print(sorted(m for m in ('torch', 'lightning', 'datasets', 'mlflow') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=cli_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("[]")
