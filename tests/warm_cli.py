"""Run the real CLI in a fresh process without paying for imports every time.

Importing torch, lightning, mlflow and datasets costs ~8 s per process here, more than most test
runs train for. A *warm server* (one per test worker) imports them once and then, for every
command, forks a child that runs `trainpipe.cli.main(args)` exactly as `python -m trainpipe` would
— its own pid, cwd, environment, stdout/stderr and exit code, killable with real signals — only
without re-importing. The server never runs torch code itself, so forking it is safe.

What differs from a fresh interpreter is only what modules do when they are *imported*: tests
of that (import discipline, `--help` speed) run a real `python -m trainpipe` (conftest.run_fresh).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

# what the server imports up front: everything a training job imports anyway
WARM_MODULES = (
    "torch",
    "lightning",
    "mlflow",
    # what opening a sqlite store imports (~1.3 s: SQLAlchemy, alembic), and registration's extras
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.pyfunc.loaders",
    "git",
    "sklearn.datasets",  # the digits source, on a job's first run in a directory
    "datasets",
    "torchmetrics",
    "hydra",
    "trainpipe.cli",
    "trainpipe.train",
    "trainpipe.evaluate",
    "trainpipe.assemble",
    "trainpipe.tasks.classification",
    "trainpipe.tasks.regression",
    "trainpipe.tasks.lm",
    # a task package imports no torch itself: its module, predictor and metrics are warmed here
    "trainpipe.tasks.tabular.module",
    "trainpipe.tasks.tabular.predictor",
    "torchmetrics.classification",
    "trainpipe.tasks.lm.module",
    "trainpipe.tasks.lm.predictor",
    "trainpipe.tasks.lm.sampling",
    # image classification: torchvision (~3 s to import) and the task's torch-side modules
    "trainpipe.tasks.images.module",
    "trainpipe.tasks.images.predictor",
    "trainpipe.tasks.images.data",
    "trainpipe.tracking.mlflow_tracker",
    "trainpipe.data.tables",
    "trainpipe.data.tokens",
    "trainpipe.registry.lifecycle",
    "trainpipe.pipeline.runner",
    "trainpipe.commands.models",
    "trainpipe.commands.reproduce",
)


def _exit_code(status: int) -> int:
    """A waitpid status as subprocess reports it: -N for a death by signal N."""
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become the command, run it, never return."""
    code = 1
    try:
        os.setsid()  # its own process group, like a command started from a shell
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(handle, fd)
            os.close(handle)
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            signal.signal(
                number, signal.default_int_handler if number == signal.SIGINT else signal.SIG_DFL
            )
        sys.argv = ["trainpipe", *request["args"]]
        from trainpipe.cli import main

        main(request["args"])
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    """The server: read one JSON request per line, fork a child for it, answer its pid and then
    its exit code."""
    for name in WARM_MODULES:
        __import__(name)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": _exit_code(status)}), flush=True)


class WarmProcess:
    """A command running in a child of the warm server (like subprocess.Popen, for tests)."""

    def __init__(
        self, server: WarmServer, pid: int, stdout: Path, stderr: Path, args: list[str]
    ) -> None:
        self.server, self.pid, self.args = server, pid, args
        self._stdout, self._stderr = stdout, stderr
        self.returncode: int | None = None

    def send_signal(self, number: int) -> None:
        os.kill(self.pid, number)

    def poll(self) -> int | None:
        """The exit code if the command has ended, else None (the server reaps it at once)."""
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
                return None
            except ProcessLookupError:
                return self.wait()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self.server.read_exit(self, timeout)
        return self.returncode

    def result(self, timeout: float | None = None) -> subprocess.CompletedProcess:
        code = self.wait(timeout)
        return subprocess.CompletedProcess(
            ["trainpipe", *self.args], code, self._stdout.read_text(), self._stderr.read_text()
        )


class WarmServer:
    def __init__(self, env: dict[str, str], scratch: Path) -> None:
        self.scratch = scratch
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from tests.warm_cli import serve; serve()"],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._read()  # ready

    def _read(self) -> dict[str, Any]:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the warm CLI server died")
        return json.loads(line)

    def start(self, args: list[str], cwd: Path, env: dict[str, str]) -> WarmProcess:
        self.count += 1
        stdout = self.scratch / f"{self.count}.out"
        stderr = self.scratch / f"{self.count}.err"
        request = {
            "args": args,
            "cwd": str(cwd),
            "env": env,
            "stdout": str(stdout),
            "stderr": str(stderr),
        }
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return WarmProcess(self, self._read()["pid"], stdout, stderr, args)

    def read_exit(self, process: WarmProcess, timeout: float | None) -> int:
        import threading

        answer: dict[str, Any] = {}
        reader = threading.Thread(target=lambda: answer.update(self._read()), daemon=True)
        reader.start()
        reader.join(timeout)
        if reader.is_alive():  # a command past its timeout is killed, as subprocess.run does
            os.killpg(process.pid, signal.SIGKILL)
            reader.join()
            raise subprocess.TimeoutExpired(["trainpipe", *process.args], timeout or 0)
        return answer["code"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)
