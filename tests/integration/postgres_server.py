"""A real PostgreSQL server for tests, from the Debian `postgresql` package's binaries (.ci/run
installs it): initdb + pg_ctl in a temporary directory, on a free port of 127.0.0.1, password
authentication; run as the `postgres` user when the tests run as root (PostgreSQL refuses to
run as root). Always stopped and removed."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.integration.mlflow_server import free_port

USER, PASSWORD, DATABASE = "trainer", "pw-7Qx!sekret", "shop"


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl (Debian keeps them out of PATH), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


class PostgresServer:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="trainpipe-pg-"))
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0

    def uri(self, password: str = PASSWORD, database: str = DATABASE) -> str:
        return f"postgresql+psycopg://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        data = self.root / "data"
        (self.root / "pw").write_text(PASSWORD)
        if self.as_postgres:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.root / "pw", "postgres")
        self._run(
            str(self.bindir / "initdb"), "-D", str(data), "-U", USER,
            f"--pwfile={self.root / 'pw'}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(data), "-o", options,
            "-l", str(self.root / "log"), "-w", "start",
        )  # fmt: skip
        import sqlalchemy

        engine = sqlalchemy.create_engine(
            self.uri(database="postgres"), isolation_level="AUTOCOMMIT"
        )
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {DATABASE}"))
        engine.dispose()

    def stop(self) -> None:
        try:
            self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "stop"
            )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
