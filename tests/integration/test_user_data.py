"""A user's own CSV trains without code changes; bad data fails before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli, write_csv
from tests.integration.mlflow_store import runs_of

pytestmark = pytest.mark.slow


def test_users_csv_trains_and_registers(workdir: Path) -> None:
    write_csv(workdir / "rows.csv", rows=300)
    result = run_cli(
        [
            "train",
            "data=csv",
            "data.path=rows.csv",
            "data.target=species",
            "experiment_name=my_csv",
            "trainer.max_epochs=8",
        ],
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = runs_of(workdir, "my_csv")
    assert run.data.params["data.target"] == "species"
    assert run.data.metrics["test/acc"] >= 0.8
    assert "models:/my_csv/1" in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["data.path=missing.csv", "data.target=species"],
            "data.path: no file matches 'missing.csv'",
        ),
        (["data.path=rows.csv", "data.target=kind"], "data.target: column 'kind' not found"),
        (
            ["data.path=rows.csv", "data.target=species", "data.features=[a,zz]"],
            "data.features: column 'zz' not found",
        ),
        (
            ["data.path=ids.csv", "data.target=species", "data.categorical=[note]"],
            "data.categorical: column 'note' has a different value in nearly every row",
        ),
        (
            ["data.path=dates.csv", "data.target=species"],
            "column 'day' holds dates, but '2024-02-30' does not parse",
        ),
        (["data.path=one_class.csv", "data.target=species"], "single class"),
        (["data.path=inf.csv", "data.target=species"], "column 'b' has 2 non-finite value(s)"),
    ],
)
def test_bad_data_exits_2_and_leaves_no_output_or_run(
    empty_workdir: Path, args: list[str], needle: str
) -> None:
    write_csv(empty_workdir / "rows.csv")
    (empty_workdir / "ids.csv").write_text(
        "a,note,species\n" + "".join(f"{i},n{i},k{i % 2}\n" for i in range(30))
    )
    (empty_workdir / "dates.csv").write_text(
        "a,day,species\n"
        + "".join(f"{i},2024-01-{i + 1:02d},k{i % 2}\n" for i in range(25))
        + "9,2024-02-30,k1\n"
    )
    (empty_workdir / "one_class.csv").write_text("a,b,species\n1,2,k\n3,4,k\n")
    (empty_workdir / "inf.csv").write_text("a,b,species\n1,inf,k1\n3,-inf,k2\n5,6,k1\n")
    result = run_cli(["train", "data=csv", *args], cwd=empty_workdir)
    assert result.returncode == 2, result.stderr[-2000:]
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert not (empty_workdir / "outputs").exists()
    assert not (empty_workdir / "mlflow.db").exists()
