"""`trainpipe reproduce models:/NAME/VERSION [--tracking-uri URI]`: retrain a registered version
from its recorded config and seed, and compare the test metrics with the recorded ones.

1. the version's run: its config (the config.yaml artifact), test metrics and data digest;
2. the data named by that config must be the data it was trained on (same content digest):
   otherwise one line, exit 2, nothing trained;
3. `trainpipe train` on exactly that config (written as an experiment file under
   <log dir>/reproduce/NAME-vN/) in a job of its own, `reproduce-vN-<original run name>`, in
   the same MLflow experiment, tagged `trainpipe.reproduces`; it registers nothing;
4. the new test metrics against the recorded ones: identical → exit 0; otherwise the
   differences are printed, exit 1. On the CPU with trainer.deterministic=true they are
   identical; GPU kernels that are not deterministic make them differ slightly.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

import yaml

from trainpipe.commands import EXPECTED_FAILURES, failure_exit
from trainpipe.errors import USER_ERROR_EXIT_CODE, ConfigError, DataError, JobFailed

REPRODUCES_TAG = "trainpipe.reproduces"
# the groups whose recorded values replace the defaults wholesale (a group's own keys would
# otherwise survive the merge: cnn-only keys under an mlp model, …)
GROUPS = ("data", "model", "trainer", "logger", "callbacks")
# path settings that must point at the new job's place, not the recorded one's
MOVED_PATHS = ("output_dir", "log_dir", "cache_dir")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"trainpipe: reproduce: {message} (see --help)", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)


def main(args: list[str]) -> int:
    parser = Parser(
        prog="trainpipe reproduce",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model_uri", help="models:/NAME/VERSION (or models:/NAME@ALIAS)")
    parser.add_argument(
        "--tracking-uri", help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db"
    )
    parsed = parser.parse_args(args)
    from trainpipe.console import quiet_environment

    quiet_environment()  # the training job inherits it
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return reproduce(parsed.model_uri, parsed.tracking_uri)
    except EXPECTED_FAILURES as err:
        return failure_exit(err)


def reproduce(model_uri: str, tracking_uri: str | None) -> int:
    """Retrain `model_uri` from its recorded config and compare; the exit code (see above)."""
    import mlflow

    from trainpipe.tracking.mlflow_tracker import absolute_uri

    store = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    uri = absolute_uri(store)
    client = mlflow.MlflowClient(uri)
    name, version = resolve_version(model_uri, uri)
    model = f"models:/{name}/{version.version}"
    recorded_run = client.get_run(version.run_id)
    conf = recorded_config(model, uri)
    digest = version.tags.get("dataset_digest") or recorded_run.data.tags.get(
        "trainpipe.data.digest"
    )
    check_data(conf, digest, model)
    config_dir = Path(_log_dir()) / "reproduce" / f"{name}-v{version.version}" / "configs"
    write_experiment(config_dir / "experiment" / "reproduce.yaml", conf, uri)
    run_id = _train(config_dir, f"reproduce-v{version.version}-{conf['run_name']}", model)
    recorded = _test_metrics(recorded_run.data.metrics)
    return report(model, recorded, _test_metrics(client.get_run(run_id).data.metrics), run_id)


def resolve_version(model_uri: str, tracking_uri: str) -> tuple[str, Any]:
    """(name, ModelVersion) of `models:/NAME/VERSION` or `models:/NAME@ALIAS`; RegistryError
    (exit 2) names an unknown model, version or alias."""
    from trainpipe.registry.store import RegisteredModel

    prefix = "models:/"
    name, _, ref = model_uri[len(prefix) :].partition("/")
    if "@" in name:
        name, ref = name.split("@", 1)
    if not model_uri.startswith(prefix) or not name or not ref:
        raise ConfigError(
            "model_uri", f"expected models:/NAME/VERSION or models:/NAME@ALIAS, got {model_uri!r}"
        )
    return name, RegisteredModel(tracking_uri, name).version(ref)


def recorded_config(model: str, tracking_uri: str) -> dict[str, Any]:
    """The resolved config the version's run trained with (its config.yaml artifact)."""
    from trainpipe.tracking.model_versions import training_config

    conf = training_config(model, tracking_uri)
    if not conf or "paths" not in conf:
        raise ConfigError(
            "model_uri", f"{model} has no recorded trainpipe config (config.yaml) to retrain from"
        )
    return conf


def data_digest(conf: dict[str, Any]) -> str:
    """The content digest of the data a resolved config names, as its prepared data carries it."""
    from trainpipe.config.identity import source_digest
    from trainpipe.config.sources import source_of

    if not source_of(conf["data"]).digest_after_load:
        return source_digest(conf["data"])
    from trainpipe.tasks import get_task

    return get_task(conf["task"]).prepare(conf).digest


def check_data(conf: dict[str, Any], recorded: str | None, model_uri: str) -> None:
    """DataError (one line, exit 2) unless the configured data has the recorded digest."""
    from trainpipe.config.sources import source_of

    data = conf["data"]
    source = source_of(data)
    # no files hash to the digest of nothing: "digest mismatch" would hide that they are gone
    if source.reads_files and not source.files(data):
        raise DataError(
            f"data.path: {data.get('path')} is missing (no such file), the data {model_uri} "
            f"was trained on (content digest {recorded or 'not recorded'}); reproduce needs it"
        )
    now = data_digest(conf)
    if recorded and now != recorded:
        raise DataError(
            f"data: {conf['data'].get('path') or conf['data'].get('name')} is not the data "
            f"{model_uri} was trained on (content digest {recorded}, now {now}); reproduce "
            "needs the same data"
        )


def unresolve_paths(conf: dict[str, Any]) -> dict[str, Any]:
    """The recorded config without its `paths`, every value that pointed into them made an
    interpolation again (`${paths.cache_dir}`), so the new job writes to its own places."""
    recorded = {k: str(conf["paths"][k]) for k in MOVED_PATHS if conf["paths"].get(k)}
    order = sorted(recorded.items(), key=lambda item: len(item[1]), reverse=True)

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: rewrite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        if isinstance(value, str):
            for key, path in order:
                if value == path or value.startswith(path + "/"):
                    return "${paths." + key + "}" + value[len(path) :]
        return value

    return {k: rewrite(v) for k, v in conf.items() if k != "paths"}


def write_experiment(path: Path, conf: dict[str, Any], tracking_uri: str) -> Path:
    """The recorded config as a global experiment file: what `trainpipe train` composes."""
    from trainpipe.runtime.atomic import atomic_write_text

    body = unresolve_paths(conf)
    body["logger"] = {**body["logger"], "tracking_uri": tracking_uri}
    body["registry"] = {**body["registry"], "register": False}  # a check, not a new version
    body.pop("run_name", None)  # set on the command line
    header = (
        "# @package _global_\n# written by `trainpipe reproduce`: the recorded training config\n"
    )
    return atomic_write_text(path, header + yaml.safe_dump(body, sort_keys=False))


def _log_dir() -> str:
    from omegaconf import OmegaConf

    from trainpipe.config.compose import compose

    return str(OmegaConf.select(compose("train", []), "paths.log_dir"))


def _job(config_dir: Path, run_name: str) -> tuple[list[str], Path]:
    """(overrides, output dir) of the reproduction's job, checked the way `trainpipe train` will
    check it: a recorded config this trainpipe no longer accepts is one line, exit 2."""
    from omegaconf import OmegaConf

    from trainpipe.config.compose import compose
    from trainpipe.config.validate import validate
    from trainpipe.tasks import check_config

    overrides = [f"~{group}" for group in GROUPS] + ["experiment=reproduce", f"run_name={run_name}"]
    cfg = compose("train", overrides, str(config_dir))
    check_config(validate(cfg, "train"))
    return overrides, Path(str(OmegaConf.select(cfg, "paths.output_dir")))


def _train(config_dir: Path, run_name: str, model_uri: str) -> str:
    """Run the training job on the recorded config; returns its MLflow run id."""
    from trainpipe.run_log import RUN_TAGS_ENV
    from trainpipe.runtime.job_state import JobState
    from trainpipe.tracking.lineage import COMMAND_ENV

    overrides, output_dir = _job(config_dir, run_name)
    env = {k: v for k, v in os.environ.items() if k != COMMAND_ENV}  # it records its own
    env[RUN_TAGS_ENV] = json.dumps({REPRODUCES_TAG: model_uri})
    command = [sys.executable, "-m", "trainpipe", "train", "--config-dir", str(config_dir)]
    print(f"trainpipe: retraining {model_uri} from its recorded config ({output_dir})")
    code = subprocess.run([*command, *overrides], env=env, check=False).returncode
    if code:
        raise JobFailed(f"the reproduction's training exited with code {code}")
    run_id = JobState.load(output_dir).run_id
    if not run_id:
        raise JobFailed(
            f"the reproduction's run has not reached MLflow: trainpipe sync {output_dir}"
        )
    return run_id


def _test_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in sorted(metrics.items()) if k.startswith("test/")}


def report(model_uri: str, recorded: dict[str, float], new: dict[str, float], run_id: str) -> int:
    """Print the comparison; 0 when every recorded test metric is reproduced exactly."""
    if not recorded:
        raise JobFailed(f"{model_uri}'s run recorded no test metrics to compare with")
    differ = {k: (v, new.get(k)) for k, v in recorded.items() if new.get(k) != v}
    if not differ:
        shown = ", ".join(f"{k} {v:.6g}" for k, v in recorded.items())
        print(f"trainpipe: reproduced {model_uri} exactly (run {run_id}): {shown}")
        return 0
    print(f"trainpipe: {model_uri} not reproduced exactly (run {run_id}):")
    width = max(len(k) for k in differ)
    for key, (before, after) in differ.items():
        change = "missing" if after is None else f"{after!r} (diff {after - before:+.3g})"
        print(f"  {key.ljust(width)}  recorded {before!r}, now {change}")
    return 1
