"""Text corpora for language modelling: documents from local files, the Python standard library,
or the Hub, as an on-disk `datasets.DatasetDict` with one `text` column; and the document split.

Each source lands in Arrow files in the cache dir, so the tokenising `.map` that follows is
cached by `datasets` and reused by the next run:
- `text`: `datasets.load_dataset("text" | "json" | "parquet" | "csv", data_files=…)`, whose own
  cache is keyed by the files' paths and modification times;
- `stdlib`: every `*.py` file of this Python's standard library, one document per file, written
  once to `<cache_dir>/sources/stdlib-<key>`, keyed by path + size + mtime of each file read (a
  cheap key: an edit that keeps both size and mtime goes unnoticed, which a stdlib never sees);
- `hub`: `datasets.load_dataset(name)`, offline-aware like the tabular hub source.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
from filelock import FileLock

from trainpipe.config.identity import data_files
from trainpipe.config.sources import SOURCES, serving, source_of
from trainpipe.data.sources import load_hub, source_digest
from trainpipe.data.splits import VALIDATION_NAMES
from trainpipe.errors import ConfigError, DataError
from trainpipe.runtime.atomic import atomic_dir

log = logging.getLogger(__name__)

ON_DECODE_ERROR = ("error", "skip")
SAMPLE_BY = ("document", "line", "paragraph")
STRUCTURED = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
STDLIB_VERSION = "stdlib-v1"  # bump when the stdlib documents are built differently


@dataclass
class Corpus:
    """Documents (a `text` column) per split of the source, and where they came from."""

    documents: datasets.DatasetDict
    description: str
    digest: str  # content of the source (config/identity.py; hub data: datasets' fingerprints)
    skipped: list[str] = field(default_factory=list)  # files not in `data.encoding` (skip mode)


def load_corpus(conf: dict[str, Any]) -> Corpus:
    """The documents a resolved `data` section names (through its registered source,
    config/sources.py), capped at `max_bytes` if set."""
    if conf["source"] not in SOURCES or "text" not in SOURCES[conf["source"]].kinds:
        raise ConfigError(
            "data.source", f"must be one of {', '.join(serving('text'))}, got {conf['source']!r}"
        )
    source = source_of(conf)
    documents, skipped = source.load(conf, "text")
    description, key = source.describe(conf), source.key
    if sum(_byte_lengths(split).sum() for split in documents.values()) == 0:
        raise DataError(f"{key}: {description!r} has no text (no documents, or only empty ones)")
    if conf.get("max_bytes") is not None:
        documents = datasets.DatasetDict(
            {name: _cap(split, int(conf["max_bytes"])) for name, split in documents.items()}
        )
    return Corpus(documents, description, source_digest(conf, documents), skipped)


# A `text` loader returns the documents and the files it left out (`data.on_decode_error=skip`).
TextLoaded = tuple[datasets.DatasetDict, list[str]]


def read_text_files(conf: dict[str, Any]) -> TextLoaded:
    """The `text` source: documents of local files."""
    return _read_files(conf, Path(conf["cache_dir"]).expanduser())


def stdlib_documents(conf: dict[str, Any]) -> TextLoaded:
    """The `stdlib` source: this Python's standard library, one document per file."""
    return _stdlib_documents(conf, Path(conf["cache_dir"]).expanduser()), []


def hub_documents(conf: dict[str, Any]) -> TextLoaded:
    """The `hub` source for text: the dataset's `text_column`."""
    return _hub_documents(conf, Path(conf["cache_dir"]).expanduser()), []


def split_documents(
    documents: datasets.DatasetDict, val_fraction: float, test_fraction: float, seed: int
) -> datasets.DatasetDict:
    """train/val/test by whole documents: the source's own splits where it has them, otherwise a
    seeded draw from its train split (a pure function of the documents and `seed`)."""
    train = documents["train"] if "train" in documents else documents[next(iter(documents))]
    own = {
        "val": next((documents[n] for n in VALIDATION_NAMES if n in documents), None),
        "test": documents.get("test"),
    }
    wanted = {"val": val_fraction, "test": test_fraction}
    train, carved = _carve(train, {n: f for n, f in wanted.items() if own[n] is None}, seed)
    return datasets.DatasetDict(
        {
            "train": train,
            "val": own["val"] if own["val"] is not None else carved["val"],
            "test": own["test"] if own["test"] is not None else carved["test"],
        }
    )


def _carve(
    ds: datasets.Dataset, fractions: dict[str, float], seed: int
) -> tuple[datasets.Dataset, dict[str, datasets.Dataset]]:
    """Draw `fractions` of the documents out of `ds`; each part keeps the documents' order."""
    if not fractions:
        return ds, {}
    order = np.random.default_rng(seed).permutation(len(ds))
    parts, start = {}, 0
    for name, fraction in fractions.items():
        count = round(len(ds) * fraction)
        if fraction > 0 and len(ds) > len(fractions):  # a small corpus still gets one document
            count = max(count, 1)
        parts[name] = ds.select(np.sort(order[start : start + count]))
        start += count
    return ds.select(np.sort(order[start:])), parts


def _read_files(conf: dict[str, Any], cache_dir: Path) -> tuple[datasets.DatasetDict, list[str]]:
    """The documents of the files `data.path` names, and the plain text files skipped because
    they are not in `data.encoding` (with `data.on_decode_error=skip`)."""
    if not conf.get("path"):
        raise ConfigError("data.path", "is required for the text source (a file, glob or list)")
    # the same file list the run identity digests (a directory stands for the files inside it)
    files = [str(f) for f in data_files(conf)]
    if not files:
        raise DataError(
            f"data.path: no file matches {_describe_path(conf['path'])} (working directory: {os.getcwd()})"
        )
    builders = {STRUCTURED.get(Path(f).suffix.lower(), "text") for f in files}
    if len(builders) > 1:
        raise DataError(
            f"data.path: {_describe_path(conf['path'])} mixes formats ({', '.join(sorted(builders))}); use one per run"
        )
    builder = builders.pop()
    options: dict[str, Any] = {}
    skipped: list[str] = []
    if builder == "text":
        sample_by = conf.get("sample_by", "document")
        if sample_by not in SAMPLE_BY:
            raise ConfigError(
                "data.sample_by", f"must be one of {', '.join(SAMPLE_BY)}, got {sample_by!r}"
            )
        encoding = _encoding(conf)
        options.update(sample_by=sample_by, encoding=encoding)
        if conf.get("on_decode_error", "error") == "skip":
            skipped = [f for f in files if not _decodes(f, encoding)]
            files = [f for f in files if f not in skipped]
            if skipped:
                log.warning(
                    "data: skipped %d file(s) that are not %s text (data.on_decode_error=skip): %s",
                    len(skipped),
                    encoding,
                    ", ".join(skipped[:5]) + (", …" if len(skipped) > 5 else ""),
                )
            if not files:
                raise DataError(
                    f"data.path: no file of {_describe_path(conf['path'])} is {encoding} text"
                )
    try:
        loaded = datasets.load_dataset(
            builder, data_files=files, cache_dir=str(cache_dir / "hf"), **options
        )
    except (datasets.exceptions.DatasetGenerationError, ValueError, OSError) as err:
        cause = err.__cause__ or err
        if "corresponds to no data" in str(cause):  # e.g. empty .jsonl files
            raise DataError(f"data.path: {_describe_path(conf['path'])} has no text") from None
        if isinstance(cause, UnicodeDecodeError) and builder == "text":
            raise _not_decodable(files, options["encoding"], cause) from None
        raise DataError(
            f"data.path: cannot read {_describe_path(conf['path'])} as {builder}: {str(cause).splitlines()[0]}"
        ) from None
    if builder == "text":
        return loaded, skipped
    return _text_column(loaded, conf.get("text_column", "text"), _describe_path(conf["path"])), []


def _encoding(conf: dict[str, Any]) -> str:
    encoding = str(conf.get("encoding", "utf-8"))
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError("data.encoding", f"unknown encoding {encoding!r}") from None
    on_error = conf.get("on_decode_error", "error")
    if on_error not in ON_DECODE_ERROR:
        raise ConfigError("data.on_decode_error", f"must be error or skip, got {on_error!r}")
    return encoding


def _decodes(path: str, encoding: str) -> bool:
    try:
        Path(path).read_bytes().decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _not_decodable(files: list[str], encoding: str, cause: UnicodeDecodeError) -> DataError:
    """The error naming the first file that is not `encoding` text (datasets names none): only
    looked for once reading failed, so a good corpus is read once."""
    bad = next((f for f in files if not _decodes(f, encoding)), None)
    where = f"{bad} is not {encoding} text" if bad else f"a file is not {encoding} text"
    return DataError(
        f"data.path: {where} ({cause.reason} at byte {cause.start}); set data.encoding to its "
        "encoding, or data.on_decode_error=skip to leave such files out"
    )


def _hub_documents(conf: dict[str, Any], cache_dir: Path) -> datasets.DatasetDict:
    return _text_column(
        load_hub(conf["name"], cache_dir), conf.get("text_column", "text"), conf["name"]
    )


def _text_column(loaded: datasets.DatasetDict, column: str, where: str) -> datasets.DatasetDict:
    """Keep only the text column, renamed to `text` (both cheap: no rows are rewritten)."""
    first = loaded[next(iter(loaded))]
    if column not in first.column_names:
        raise DataError(
            f"data.text_column: column {column!r} not found in {where} (columns: {', '.join(first.column_names)})"
        )
    kind = first.features[column]
    if not (isinstance(kind, datasets.Value) and kind.dtype in ("string", "large_string")):
        raise DataError(f"data.text_column: column {column!r} in {where} is {kind}, not text")
    loaded = loaded.select_columns([column])
    return loaded.rename_column(column, "text") if column != "text" else loaded


def _stdlib_documents(conf: dict[str, Any], cache_dir: Path) -> datasets.DatasetDict:
    # the regular *.py files, sorted, site-packages left out; only as many as max_bytes needs
    files = data_files(conf)
    digest = hashlib.sha256(STDLIB_VERSION.encode())
    for f in files:
        info = f.stat()
        digest.update(f"{f}|{info.st_size}|{info.st_mtime_ns}\n".encode())
    target = cache_dir / "sources" / f"stdlib-{digest.hexdigest()[:16]}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if not (target / "dataset_dict.json").is_file():
            # a few stdlib files are deliberately not UTF-8 (encoding tests): keep them, replaced
            texts = [f.read_bytes().decode("utf-8", errors="replace") for f in files]
            train = datasets.Dataset.from_dict({"text": texts})
            with atomic_dir(target) as staging:
                datasets.DatasetDict({"train": train}).save_to_disk(str(staging))
    return datasets.load_from_disk(str(target))


def _cap(ds: datasets.Dataset, max_bytes: int) -> datasets.Dataset:
    """The first `max_bytes` bytes of text: whole documents in order, the last one cut to fit."""
    ends = np.cumsum(_byte_lengths(ds))
    if len(ends) == 0 or ends[-1] <= max_bytes:
        return ds
    whole = int(np.searchsorted(ends, max_bytes, side="right"))
    room = max_bytes - (int(ends[whole - 1]) if whole else 0)
    if room == 0:
        return ds.select(range(whole))
    # one cached pass over the kept documents (at most max_bytes of text) to cut the last one
    return ds.select(range(whole + 1)).map(
        _cut_document,
        batched=True,
        with_indices=True,
        fn_kwargs={"index": whole, "keep_bytes": room},
        desc="cap corpus",
    )


def _cut_document(
    batch: dict[str, list], indices: list[int], index: int, keep_bytes: int
) -> dict[str, list]:
    texts = batch["text"]
    for row, i in enumerate(indices):
        if i == index:  # cut at a byte, drop a character split in half
            texts[row] = texts[row].encode("utf-8")[:keep_bytes].decode("utf-8", errors="ignore")
    return {"text": texts}


def _byte_lengths(ds: datasets.Dataset) -> np.ndarray:
    """UTF-8 bytes of each document (from the Arrow offsets: no text is decoded)."""
    if len(ds) == 0:
        return np.zeros(0, dtype=np.int64)
    # `[:]` in arrow format is a zero-copy slice of the memory-mapped table
    return (
        pc.binary_length(ds.with_format("arrow")[:]["text"])
        .fill_null(0)
        .to_numpy()
        .astype(np.int64)
    )


def _describe_path(path: str | list[str]) -> str:
    return repr(path) if isinstance(path, str) else repr(list(path))
