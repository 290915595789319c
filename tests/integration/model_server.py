"""A real `mlflow models serve` of a registered model on 127.0.0.1 (docs/serving.md), started in
its own process group with MLflow's unpickling refused, and always torn down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import cli_env
from tests.integration.mlflow_server import free_port, stop_group


class ModelServer:
    def __init__(self, model_uri: str, workdir: Path) -> None:
        self.model_uri = model_uri
        self.workdir = workdir
        self.port = free_port()
        self.log = workdir / f"serve-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ModelServer:
        command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", self.model_uri]
        command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(self.port), "-w", "1"]
        env = cli_env(
            MLFLOW_TRACKING_URI=f"sqlite:///{self.workdir / 'mlflow.db'}",
            MLFLOW_ALLOW_PICKLE_DESERIALIZATION="false",
            # MLflow execs `uvicorn` by name: the venv's bin dir, as an activated venv has it
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        )
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=log, cwd=self.workdir, start_new_session=True
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=1):
                    return self
            except OSError:
                time.sleep(0.3)
        self.__exit__()
        raise TimeoutError(f"mlflow models serve did not answer: {self.log.read_text()[-3000:]}")

    def __exit__(self, *_: Any) -> None:
        stop_group(self.process)

    def invoke(self, body: dict[str, Any]) -> Any:
        """POST /invocations with a JSON body; the `predictions` of the answer."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            return json.loads(reply.read())["predictions"]
