"""Training data from a database: DuckDB (embedded) and a real PostgreSQL server started here.
A table with categorical, missing and date columns trains and registers a model that takes raw
rows; a changed row is a new job; a bad query, an unknown table or a wrong password is exit 2
with one line, the password masked, and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import mixed_table, run_cli
from tests.integration.mlflow_store import client_for, runs_of
from tests.integration.postgres_server import PASSWORD, PostgresServer, binaries

pytestmark = pytest.mark.slow

TRAIN = [
    "train",
    "data=sql",
    "data.target=plan",
    "trainer.max_epochs=12",
    "model.optimizer.lr=0.01",
]


@pytest.fixture(scope="session")
def postgres():
    """One server for every PostgreSQL test (start ~2 s), stopped at the end."""
    bindir = binaries()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql"
        )
    server = PostgresServer(bindir)
    server.start()
    yield server
    server.stop()


def customers(rows: int = 400) -> pd.DataFrame:
    frame = mixed_table(rows=rows)
    return frame.assign(signup=pd.to_datetime(frame["signup"]))  # a TIMESTAMP column


def test_duckdb_table_trains_and_the_model_takes_raw_rows(workdir: Path) -> None:
    import duckdb

    frame = mixed_table(rows=400)
    with duckdb.connect(str(workdir / "shop.duckdb")) as connection:
        connection.execute("CREATE TABLE customers AS SELECT * FROM frame")
    frame.drop(columns="plan").head(3).to_parquet(workdir / "new.parquet")
    args = [*TRAIN, "data.uri=duckdb:///shop.duckdb", "data.table=customers", "data.name=shop"]
    result = run_cli(args, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "categorical island (3), active (2)" in result.stdout + result.stderr
    assert (
        "excluded customer (a different value in every row: an id)" in result.stdout + result.stderr
    )
    (run,) = runs_of(workdir, "shop")
    assert run.data.metrics["test/acc"] >= 0.7
    assert {"test/f1.gold", "test/recall.basic"} <= set(run.data.metrics)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/shop/1")
    rows = pd.read_parquet(workdir / "new.parquet").assign(island=["Dream", None, "Atlantis"])
    assert set(model.predict(rows)) <= {"basic", "silver", "gold"}
    # trainpipe predict from a table of the database == from the same rows in a Parquet file
    incoming = mixed_table(rows=60, seed=1).drop(columns="plan")
    with duckdb.connect(str(workdir / "shop.duckdb")) as connection:
        connection.execute("CREATE TABLE incoming AS SELECT * FROM incoming")
    incoming.to_parquet(workdir / "incoming.parquet")
    scored = {}
    for name, source in (
        ("sql", ["data.uri=duckdb:///shop.duckdb", "data.table=incoming"]),
        ("file", ["data.path=incoming.parquet"]),
    ):
        command = ["predict", "model_uri=models:/shop/1", *source, f"output={name}.parquet"]
        result = run_cli(
            [*command, "keep=[customer]", "probabilities=true", "chunk_rows=25"], workdir
        )
        assert result.returncode == 0, result.stderr[-3000:]
        scored[name] = pd.read_parquet(workdir / f"{name}.parquet")
    pd.testing.assert_frame_equal(scored["sql"], scored["file"])
    assert scored["sql"]["customer"].tolist() == incoming["customer"].tolist()  # 3 chunks, in order
    inputs = {r.data.tags.get("trainpipe.predict.input"): r for r in runs_of(workdir, "shop")}
    record = inputs["duckdb:///shop.duckdb (table incoming)"].data.tags
    assert record["trainpipe.predict.rows"] == "60" and record["trainpipe.predict.input_digest"]


def test_postgres_table_trains_and_a_changed_row_is_a_new_job(postgres, workdir: Path) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres.uri())
    customers().to_sql("customers", engine, index=False, if_exists="replace")
    # quoted for Hydra's override grammar (the password holds a "!")
    args = [*TRAIN, f"data.uri='{postgres.uri()}'", "data.table=customers", "data.name=crm"]
    first = run_cli(args, cwd=workdir)
    assert first.returncode == 0, first.stderr[-3000:]
    with engine.begin() as connection:
        connection.execute(
            sqlalchemy.text("UPDATE customers SET size = 99 WHERE customer = 'c00007'")
        )
    engine.dispose()
    second = run_cli(args, cwd=workdir)
    assert second.returncode == 0, second.stderr[-3000:]
    runs = runs_of(workdir, "crm")
    assert len(runs) == 2 and len({r.info.run_name for r in runs}) == 2
    assert len({r.data.tags["trainpipe.data.digest"] for r in runs}) == 2
    assert all(r.data.metrics["test/acc"] >= 0.6 for r in runs)
    client = client_for(workdir)
    for run in runs:  # the password is nowhere: params, tags, recorded config
        assert run.data.params["data.uri"] == postgres.uri(password="***")
        assert PASSWORD not in json.dumps(run.data.tags) + json.dumps(run.data.params)
        config = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(workdir)))
        assert PASSWORD not in config.read_text() and "trainer:***@" in config.read_text()
    for output in (first, second):
        assert PASSWORD not in output.stdout + output.stderr
    logs = "".join(p.read_text(errors="replace") for p in (workdir / "outputs").rglob("*.log"))
    assert PASSWORD not in logs
    # scoring rows of the database: the password is in no message, tag or param either
    command = ["predict", "model_uri=models:/crm/1", f"data.uri='{postgres.uri()}'"]
    command += ["data.query=SELECT * FROM customers WHERE active", "output=crm.csv"]
    scored = run_cli(command, cwd=workdir)
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert PASSWORD not in scored.stdout + scored.stderr
    (run,) = [r for r in runs_of(workdir, "crm") if "trainpipe.predict.input" in r.data.tags]
    assert run.data.tags["trainpipe.predict.input"] == f"{postgres.uri(password='***')} (query)"
    assert PASSWORD not in json.dumps(run.data.tags) + json.dumps(run.data.params)
    assert len(pd.read_csv(workdir / "crm.csv")) == int(run.data.tags["trainpipe.predict.rows"])


@pytest.mark.parametrize(
    ("source", "password", "needle"),
    [
        ("data.query=SELECT * FROM customers WHERE", PASSWORD, "data.query: syntax error"),
        ("data.table=nowhere", PASSWORD, 'data.table: relation "nowhere" does not exist'),
        ("data.table=customers", "wrong-pw", "password authentication failed"),
        # not quoted: Hydra's grammar error quotes the override, password and all
        ("data.table=customers", "unquoted!", "data.uri=postgresql+psycopg://trainer:***@"),
    ],
)
def test_bad_sql_exits_2_with_one_line_and_writes_nothing(
    postgres, empty_workdir: Path, source: str, password: str, needle: str
) -> None:
    uri = postgres.uri(password=password)
    value = uri if password.endswith("!") else f"'{uri}'"
    result = run_cli(
        ["train", "data=sql", f"data.uri={value}", source, "data.target=plan"], cwd=empty_workdir
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert password not in result.stderr + result.stdout
    if password != PASSWORD:
        assert "trainer:***@" in lines[0]
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in empty_workdir.iterdir()) == []


def test_credentials_from_the_environment_read_the_same_rows(
    postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy

    from trainpipe.data.sql import read_rows

    engine = sqlalchemy.create_engine(postgres.uri())
    customers(rows=50).to_sql("accounts", engine, index=False, if_exists="replace")
    engine.dispose()
    conf = {"table": "accounts", "query": None, "chunk_size": 100, "cache_dir": str(tmp_path)}
    with_password = read_rows({**conf, "uri": postgres.uri()})
    monkeypatch.setenv("PGPASSWORD", PASSWORD)  # libpq's own variable: no secret in the config
    without = read_rows({**conf, "uri": postgres.uri().replace(f":{PASSWORD}@", "@")})
    assert without == with_password  # same digest, same cached Parquet file
    assert with_password[1].is_file() and with_password[0] in str(with_password[1])
