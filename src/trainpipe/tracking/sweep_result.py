"""What a sweep ends with: its best job's model registered once, and a table of its jobs.

With `registry.sweep: best` (configs/train.yaml) the jobs of a --multirun package their model as
usual but leave a registration request beside it instead of registering (registration.py); when the
sweep ends, its Hydra callback (tracking/sweep.py) registers the best job's package — one new
version, the challenger — and prints the jobs. `registry.sweep: each` registers every job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainpipe.runtime.atomic import atomic_write_text

REQUEST_FILE = "registration.json"  # in the job's model package dir
OUTPUT_DIR_TAG = "trainpipe.paths.output_dir"
PACKAGE_DIR = "model"  # <job output dir>/model: the package (registration.py)


def defer_registration(package_dir: Path, model_name: str, version_tags: dict[str, str]) -> Path:
    """Leave the registration of a sweep job's package to the end of the sweep."""
    request = {"model_name": model_name, "version_tags": version_tags}
    return atomic_write_text(Path(package_dir) / REQUEST_FILE, json.dumps(request, indent=2))


def register_best(tracking_uri: str, best: Any) -> str | None:
    """Register the best job's deferred package (once: a rerun of the sweep finds the version);
    its model URI, or None when the job left no request (registry.register=false, `each`)."""
    from mlflow import MlflowClient

    from trainpipe.tracking.model_versions import CHALLENGER, log_and_register, registered_version

    output_dir = best.data.tags.get(OUTPUT_DIR_TAG)
    request_path = Path(output_dir or ".") / PACKAGE_DIR / REQUEST_FILE
    if not output_dir or not request_path.is_file():
        return None
    request = json.loads(request_path.read_text())
    run_id = best.info.run_id
    known = registered_version(tracking_uri, request["model_name"], run_id)
    if known:
        return known
    name = request["model_name"]
    uri, version = log_and_register(
        tracking_uri, run_id, name, request_path.parent, request["version_tags"]
    )
    # the sweep's one new version is the challenger, as a job's registration makes its own
    MlflowClient(tracking_uri=tracking_uri).set_registered_model_alias(name, CHALLENGER, version)
    return uri


def job_label(run: Any) -> str:
    """A job's number in its sweep (its output dir is <sweep dir>/<number>), else the run name."""
    output_dir = run.data.tags.get(OUTPUT_DIR_TAG)
    return Path(output_dir).name if output_dir else run.info.run_name


def print_jobs(
    children: list[Any],
    objectives: dict[str, float],
    best: Any | None,
    metric: str,
    overrides_tag: str,
    registered: str | None,
) -> None:
    """The sweep's jobs as a table (best first marked), then one line on the best job."""
    from rich.console import Console
    from rich.table import Table

    def number(run: Any) -> tuple[int, str]:
        label = job_label(run)
        return (int(label), label) if label.isdigit() else (1 << 30, label)

    table = Table(title=f"sweep: {len(children)} job(s), objective {metric}")
    for column in ("job", "overrides", "status", metric, ""):
        table.add_column(column)
    for run in sorted(children, key=number):
        value = objectives.get(run.info.run_id)
        table.add_row(
            job_label(run),
            run.data.tags.get(overrides_tag, ""),
            run.info.status,
            "" if value is None else f"{value:.6g}",
            "best" if best is not None and run.info.run_id == best.info.run_id else "",
        )
    console = Console()
    if not console.is_terminal:  # a log file or a pipe: no wrapped rows
        console = Console(width=200)
    console.print(table)
    if best is None:
        console.print("sweep: no job reported its objective")
        return
    line = (
        f"best job {job_label(best)}: {metric} {objectives[best.info.run_id]:.6g} "
        f"({best.data.tags.get(overrides_tag, '')}), run {best.info.run_id}"
    )
    console.print(line + (f", registered as {registered}" if registered else ""), soft_wrap=True)
