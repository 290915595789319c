"""`trainpipe predict`: score a file (or any registered input) with a trained model, in chunks.

    input ──reader──▶ batches ──cut──▶ chunks of chunk_rows ──predictor.score──▶ part files
          ──publish──▶ one output file, renamed into place; the run recorded in MLflow

- Streaming: one chunk (plus one reader block) is in memory at a time, whatever the input size.
- What goes in and what comes out is the predictor's (`input_columns`, `output_columns`, `score`,
  tasks/base.py): this module never asks which task it scores with.
- Resumable: the parts of a job live in `.<output name>.partial/<key>/` beside the output, the
  key a digest of what decides the result (the model version, the input's content, the options).
  A rerun of an interrupted job finds the parts written so far (each written atomically) and
  scores only the rest; the published file is the same bytes an uninterrupted run writes.
- Nothing under the output's name until the end: the parts are concatenated into a temp file in
  the partial dir and renamed over it. A user error (a column the model needs is missing, a
  prompt that is not text) removes the job's parts: nothing is left behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainpipe.config.secrets import masked_config
from trainpipe.errors import ConfigError, DataError, UserError
from trainpipe.predict.readers import Reader, reader_for
from trainpipe.predict.writers import check_output, done_parts, file_sha256, publish, write_part
from trainpipe.runtime import faults
from trainpipe.runtime.failures import Interrupted, classify
from trainpipe.runtime.signals import StopSignals
from trainpipe.tasks.base import ScoreOptions

SAMPLING_KEYS = ("max_new_tokens", "temperature", "top_k", "seed")


@dataclass
class Request:
    """A checked `trainpipe predict` config: what can be known without torch or the model."""

    conf: dict[str, Any]
    output: Path
    reader: Reader
    keep: list[str]


@dataclass
class Scored:
    """What a finished job reports (and records in MLflow)."""

    output: Path
    rows: int
    rows_per_s: float
    seconds: float
    input_digest: str
    output_digest: str
    model: str  # the model scored with, resolved: models:/NAME/VERSION, runs:/…, a path
    run_id: str | None = None
    resumed_rows: int = 0
    bad_rows: int = 0  # rows skipped with skip_bad=true (null outputs)

    def summary(self) -> dict[str, Any]:
        """JSON-able (the pipeline's score stage caches it)."""
        return {
            "model_uri": self.model,
            "output": str(self.output.resolve()),
            "output_digest": self.output_digest,
            "input_digest": self.input_digest,
            "rows": self.rows,
            "rows_per_s": self.rows_per_s,
            "bad_rows": self.bad_rows,
        }


def request_of(overrides: list[str]) -> Request:
    """The checked request of `trainpipe predict OVERRIDES` (ConfigError/DataError otherwise)."""
    from trainpipe.config.compose import compose
    from trainpipe.config.validate import validate

    return check_request(validate(compose("predict", overrides), "predict"))


def settings_request(
    settings: dict[str, Any], prefix: str, model_uri: str, extra: list[str]
) -> Request:
    """The request of settings holding `data_path`, `output` and predict `overrides` (the
    pipeline's score stage, configs/pipeline.yaml); errors name `prefix.key`."""
    for key in ("data_path", "output"):
        if not settings[key]:
            raise ConfigError(f"{prefix}.{key}", "is required to score")
    overrides = [f"model_uri={model_uri}", f"data.path={settings['data_path']}"]
    overrides += [f"output={settings['output']}", *extra, *settings["overrides"]]
    return request_of(overrides)


def check_request(conf: dict[str, Any]) -> Request:
    """Config and files, before torch is imported: reader, output path, input file, kept columns."""
    kind = reader_for(conf["data"])
    output = check_output(conf["output"])
    reader = kind.open(conf["data"])
    keep = [str(c) for c in conf["keep"]]
    missing = [c for c in keep if c not in reader.columns]
    if missing:
        raise DataError(
            f"keep: column(s) {missing} are not in {reader.describe()} (it has {reader.columns})"
        )
    return Request(conf, output, reader, keep)


def chunks(batches: Iterator[Any], rows: int) -> Iterator[Any]:
    """pyarrow Tables of exactly `rows` rows (the last one fewer), whatever the batches' sizes:
    chunk i is the same rows on every run, which resuming relies on."""
    import pyarrow as pa

    held: list[Any] = []
    count = 0
    for batch in batches:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        held.append(table)
        count += table.num_rows
        while count >= rows:
            whole = pa.concat_tables(held, promote_options="permissive")
            yield whole.slice(0, rows)
            rest = whole.slice(rows)
            held, count = ([rest] if rest.num_rows else []), rest.num_rows
    if count:
        yield pa.concat_tables(held, promote_options="permissive")


def device_of(setting: str) -> str:
    import torch

    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda was asked for but no GPU is visible")
    if setting != "auto":
        return setting
    return "cuda" if torch.cuda.is_available() else "cpu"


def autocast(device: str, trained: dict[str, Any] | None) -> Any:
    """bf16 autocast on a GPU for a model that trained in bf16 (its recorded trainer.precision);
    otherwise the model runs in the precision it was saved in."""
    import torch

    precision = str(((trained or {}).get("trainer") or {}).get("precision", ""))
    if device.startswith("cuda") and "bf16" in precision:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def job_key(model: str, request: Request, options: ScoreOptions) -> str:
    """What decides the output: a different model version, input, or option is another job."""
    conf = request.conf
    decided = {
        "model": model,
        "input": request.reader.digest(),
        "keep": request.keep,
        "chunk_rows": conf["chunk_rows"],
        "probabilities": options.probabilities,
        "sampling": options.sampling,
        "skip_bad": options.skip_bad,
        "base_dir": options.base_dir,  # a table's relative image paths name files beside it
        # where and how many rows at once: numerics may differ in the last bits between them
        "device": options.device,
        "batch_size": options.batch_size,
    }
    return hashlib.sha256(json.dumps(decided, sort_keys=True).encode()).hexdigest()[:16]


def copied(request: Request) -> list[str]:
    """The input columns the output carries: the reader's own (a folder's `path`), then `keep`."""
    return list(dict.fromkeys([*getattr(request.reader, "passed", []), *request.keep]))


def input_key(reader: Reader) -> str:
    """The config key that names the input (data.path; data.query for SQL), for messages."""
    return str(getattr(reader, "key", "data.path"))


def partial_root(output: Path) -> Path:
    return output.parent / f".{output.name}.partial"


def run_predict(request: Request, tracker: Any = None) -> Scored:
    """Score the request's input into its output (resuming an interrupted run of the same job).
    `tracker`: an open run to record the job in (default: a run of its own, configs/predict.yaml
    `logger`)."""
    from trainpipe.loading import load_model
    from trainpipe.predict.progress import ScoringProgress
    from trainpipe.predict.record import ScoringRecord, resolve_model
    from trainpipe.runtime.lock import OutputDirLock

    conf = request.conf
    predictor, trained = load_model(conf["model_uri"], conf["tracking_uri"])
    if not hasattr(predictor, "score"):  # a task whose predictor has no batch scoring (yet)
        kind = predictor.spec.get("task", "this")
        raise ConfigError("model_uri", f"{kind} models cannot be batch-scored (no `score`)")
    reader = request.reader
    if hasattr(reader, "match"):  # not a table (a folder of images): it names the model's column
        reader.match(predictor.input_columns(), predictor.data_kind)
    missing = [c for c in predictor.input_columns() if c not in reader.columns]
    if missing:
        raise DataError(
            f"{input_key(reader)}: {reader.describe()} is missing column(s) {missing} the model "
            f"reads (it has {reader.columns})"
        )
    base = getattr(reader, "base", None)
    options = ScoreOptions(
        probabilities=conf["probabilities"],
        batch_size=conf["batch_size"],
        device=device_of(conf["device"]),
        sampling={k: conf[k] for k in SAMPLING_KEYS},
        skip_bad=conf["skip_bad"],
        base_dir=str(base) if base is not None else None,
    )
    clash = sorted(set(copied(request)) & set(predictor.output_columns(options)))
    if clash:
        raise ConfigError("keep", f"column(s) {clash} are also output columns of the model")
    model, experiment = resolve_model(conf["model_uri"], conf["tracking_uri"])
    key = job_key(model, request, options)
    directory = partial_root(request.output) / key
    lock = OutputDirLock(directory).acquire()  # one process per job; created with the dir
    record = ScoringRecord(conf, directory, model, experiment, key, tracker)
    stop = StopSignals()  # SIGTERM/SIGINT: stop at once (parts are whole), exit 75/130
    stop.install()
    try:
        shown = {k: v for k, v in conf.items() if k not in ("logger", "tracking_uri")}
        shown = masked_config(shown)  # no secrets (a data.uri's password)
        (directory / "job.json").write_text(json.dumps({"model": model, "conf": shown}, indent=1))
        record.start(request)
        progress = ScoringProgress(getattr(request.reader, "rows", None), conf["progress_every_s"])
        scored = _score_chunks(request, predictor, options, trained, directory, progress)
        progress.close()
        first_output = predictor.output_columns(options)[0]
        bad_rows = publish(directory, scored, request.output, count_nulls=first_output)
    except UserError as err:
        record.finish_failed(str(err))
        lock.release()
        shutil.rmtree(directory, ignore_errors=True)  # the input is at fault: nothing to resume
        _remove_if_empty(partial_root(request.output))
        raise
    except (Interrupted, KeyboardInterrupt) as err:
        record.finish_failed(classify(err).reason, status="KILLED")  # the rerun reopens it
        raise
    finally:
        stop.restore()
    result = Scored(
        output=request.output,
        rows=progress.rows + progress.skipped,
        rows_per_s=progress.rows_per_s,
        seconds=progress.seconds,
        input_digest=request.reader.digest(),
        output_digest=file_sha256(request.output),
        model=model,
        resumed_rows=progress.skipped,
        bad_rows=bad_rows,
    )
    left = record.finish(request, result)
    lock.release()
    if not left:  # a journal still to send stays with the job's dir (`trainpipe sync DIR`)
        shutil.rmtree(directory, ignore_errors=True)
        _remove_if_empty(partial_root(request.output))
    return result


def _score_chunks(
    request: Request,
    predictor: Any,
    options: ScoreOptions,
    trained: dict[str, Any] | None,
    directory: Path,
    progress: Any,
) -> int:
    """Write a part per chunk not written yet; returns the number of chunks."""
    import pyarrow as pa

    done = done_parts(directory)
    inputs, skipped_rows, index = predictor.input_columns(), 0, -1
    with autocast(options.device, trained):
        for index, chunk in enumerate(chunks(request.reader.batches(), request.conf["chunk_rows"])):
            if index < done:
                skipped_rows += chunk.num_rows
                continue
            if index == done:
                progress.resumed(skipped_rows, done)
            try:
                outputs = predictor.score(chunk.select(inputs).to_pandas(), options)
            except DataError as err:  # positions in the message are the chunk's: say which
                first = skipped_rows + progress.rows
                where = (
                    f"in rows {first}–{first + chunk.num_rows - 1} of {request.reader.describe()}"
                )
                raise DataError(f"{err.args[0]} ({where}; skip_bad=true scores the rest)") from None
            table = chunk.select(copied(request))
            for name, values in outputs.items():
                table = table.append_column(name, pa.array(values))
            write_part(directory, index, table)
            if faults.armed("kill_after_chunk", index):
                faults.die()
            if faults.armed("term_after_chunk", index):
                faults.terminate()
            progress.update(chunk.num_rows)
    if index < 0:
        raise DataError(f"{input_key(request.reader)}: {request.reader.describe()} holds no rows")
    if index < done:  # every chunk was scored before: the job was killed while publishing
        progress.resumed(skipped_rows, done)
    return index + 1


def _remove_if_empty(directory: Path) -> None:
    with suppress(OSError):
        directory.rmdir()
