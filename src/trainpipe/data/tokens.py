"""Tokenise text splits and pack each into one flat, memory-mapped token file.

`prepare_text` runs corpus → document split → tokenizer → tokenising `.map` → packing:
- the `.map` is batched and multi-process (`data.num_proc`), with a fingerprint derived from the
  split's own fingerprint and the tokenizer's, so `datasets` reuses its cache files on a rerun;
- every document is stored as `[eot, ids...]`, so packing is a plain concatenation: documents are
  joined by end-of-text ids and the first one is conditioned on an eot like all others;
- the packed splits live in `<cache_dir>/tokens/<digest>/{train,val,test}.bin` with a `meta.json`,
  written to a temp dir and renamed into place under a lock; a rerun whose digest exists skips the
  tokenising altogether and only opens the memmaps.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from filelock import FileLock

from trainpipe.data.text import load_corpus, split_documents
from trainpipe.data.tokenizers import TextTokenizer, build_tokenizer, check_tokenizer_config
from trainpipe.errors import DataError
from trainpipe.runtime.atomic import atomic_dir

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
TOKENS_VERSION = "tokens-v1"  # bump when tokenising or packing changes, so old packs are not used
MAP_BATCH = 256  # documents per `.map` batch (and the least a worker process gets)


@dataclass
class PreparedText:
    """Packed token splits (read-only memmaps) and what a language-modelling task needs to know.

    Documents are the non-empty ones; token counts include the end-of-text id in front of each.
    """

    splits: dict[str, np.ndarray] = field(repr=False)
    tokenizer: TextTokenizer = field(repr=False)
    vocab_size: int
    eot_id: int
    digest: str  # content of the source documents
    split_digest: str  # the packed token splits: data, split settings and tokenizer
    source: str
    documents: dict[str, int]
    bytes: dict[str, int]  # UTF-8 bytes of text per split
    tokens: dict[str, int]
    unigram_entropy: float  # nats/token of the train tokens' own frequencies: a loss baseline
    bytes_per_token: dict[str, float]  # loss_nats / ln 2 / bytes_per_token = bits per byte
    token_dir: Path
    skipped_files: int = 0  # plain text files left out: not in data.encoding (skip mode)
    cache_reused: bool = False
    seconds: float = 0.0

    def split_sizes(self) -> dict[str, int]:
        """Tokens per split."""
        return dict(self.tokens)


def prepare_text(data_conf: dict[str, Any], tokenizer_conf: dict[str, Any]) -> PreparedText:
    """Load, split, tokenise and pack the text a resolved `data` and `tokenizer` section name."""
    started = time.perf_counter()
    check_tokenizer_config(tokenizer_conf)
    cache_dir = Path(data_conf["cache_dir"]).expanduser()
    corpus = load_corpus(data_conf)
    splits = split_documents(
        corpus.documents, data_conf["val_fraction"], data_conf["test_fraction"], data_conf["seed"]
    )
    tokenizer = build_tokenizer(tokenizer_conf, splits["train"], cache_dir)
    fingerprints = {
        # short enough for datasets' per-process suffix ("_00000_of_00002"; 64 chars in all)
        name: _hash(TOKENS_VERSION, splits[name]._fingerprint, tokenizer.fingerprint)[:32]
        for name in SPLITS
    }
    digest = _hash(*fingerprints.values())[:16]
    token_dir = cache_dir / "tokens" / digest
    token_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(token_dir.parent / f".{digest}.lock")):
        reused = (token_dir / "meta.json").is_file()
        if not reused:
            num_proc = data_conf.get("num_proc", 2)
            tokenised = {
                name: _tokenise(splits[name], tokenizer, fingerprints[name], num_proc)
                for name in SPLITS
            }
            _pack(tokenised, tokenizer, token_dir, corpus.description)
    meta = json.loads((token_dir / "meta.json").read_text())
    _check_sizes(meta, data_conf["seq_len"])
    prepared = PreparedText(
        splits={
            name: np.memmap(token_dir / f"{name}.bin", dtype=meta["dtype"], mode="r")
            for name in SPLITS
        },
        tokenizer=tokenizer,
        vocab_size=tokenizer.vocab_size,
        eot_id=tokenizer.eot_id,
        digest=corpus.digest,
        split_digest=digest,
        source=corpus.description,
        documents=meta["documents"],
        bytes=meta["bytes"],
        tokens=meta["tokens"],
        unigram_entropy=meta["unigram_entropy"],
        bytes_per_token={n: meta["bytes"][n] / meta["tokens"][n] for n in SPLITS},
        token_dir=token_dir,
        skipped_files=len(corpus.skipped),
        cache_reused=reused,
        seconds=time.perf_counter() - started,
    )
    # the data digest, as `trainpipe models list` and the run's tags show it (the split digest
    # names the token cache dir: one digest for people, not two)
    log.info(
        "text %s: %s documents%s, %s tokens (train/val/test), %s vocab %d, %.2f bytes/token, "
        "unigram entropy %.3f nats, data digest %s, cache %s, %.2fs",
        prepared.source,
        "/".join(str(prepared.documents[n]) for n in SPLITS),
        f" ({prepared.skipped_files} file(s) skipped: not {data_conf.get('encoding', 'utf-8')})"
        if prepared.skipped_files
        else "",
        "/".join(str(prepared.tokens[n]) for n in SPLITS),
        tokenizer.kind,
        prepared.vocab_size,
        prepared.bytes_per_token["train"],
        prepared.unigram_entropy,
        prepared.digest,
        "reused" if reused else "built",
        prepared.seconds,
    )
    return prepared


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype holding every id: uint16 up to 65,536 ids, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def tokenise_batch(batch: pa.Table, tokenizer: TextTokenizer) -> pa.Table:
    """Batched `.map` function: each non-empty document → `ids` = [eot, *ids] and its `n_bytes`."""
    texts = [text or "" for text in batch.column("text").to_pylist()]
    flat, lengths = tokenizer.encode_flat(texts)
    keep = lengths > 0  # an empty document (a blank line) would only add a stray eot
    rows = lengths[keep] + 1
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(rows, out=offsets[1:])
    ids = np.empty(offsets[-1], dtype=token_dtype(tokenizer.vocab_size))
    is_eot = np.zeros(len(ids), dtype=bool)
    is_eot[offsets[:-1]] = True
    ids[is_eot] = tokenizer.eot_id
    ids[~is_eot] = flat  # empty documents contributed no ids, so `flat` lines up
    n_bytes = pc.binary_length(batch.column("text")).fill_null(0).to_numpy()[keep]
    return pa.table(
        {
            "ids": pa.LargeListArray.from_arrays(offsets, ids),
            "n_bytes": pa.array(n_bytes, type=pa.int64()),
        }
    )


def _tokenise(
    split: datasets.Dataset, tokenizer: TextTokenizer, fingerprint: str, num_proc: int
) -> datasets.Dataset:
    # a process per batch at most: forking for a handful of documents costs more than it saves
    procs = max(1, min(num_proc or 1, -(-len(split) // MAP_BATCH)))
    with _one_thread_per_process(procs > 1):
        return split.with_format("arrow").map(
            tokenise_batch,
            batched=True,
            batch_size=MAP_BATCH,
            fn_kwargs={"tokenizer": tokenizer},
            remove_columns=split.column_names,
            num_proc=procs if procs > 1 else None,
            new_fingerprint=fingerprint,
            desc="tokenise",
        )


@contextlib.contextmanager
def _one_thread_per_process(active: bool) -> Iterator[None]:
    """Turn Hugging Face tokenizers' thread pool off while `.map` forks its workers.

    The worker processes are the parallelism here; a pool in each would run num_proc x cores
    threads, and a fork after the parent used its pool makes every worker print a warning.
    """
    if not active:
        yield
        return
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


def _pack(
    tokenised: dict[str, datasets.Dataset], tokenizer: TextTokenizer, target: Path, source: str
) -> None:
    """Write each split's ids as one flat file, a chunk at a time, in a dir published whole."""
    dtype = token_dtype(tokenizer.vocab_size)
    counts = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    meta: dict[str, Any] = {"documents": {}, "bytes": {}, "tokens": {}}
    with atomic_dir(target) as staging:
        for name, split in tokenised.items():
            table = split.with_format("arrow")[:] if len(split) else None
            with open(staging / f"{name}.bin", "wb") as out:
                for chunk in table.column("ids").chunks if table is not None else []:
                    ids = chunk.flatten().to_numpy()
                    ids.astype(dtype, copy=False).tofile(out)
                    if name == "train":
                        counts += np.bincount(ids, minlength=len(counts))
            meta["documents"][name] = len(split)
            meta["bytes"][name] = int(pc.sum(table.column("n_bytes")).as_py()) if table else 0
            meta["tokens"][name] = (staging / f"{name}.bin").stat().st_size // dtype.itemsize
        p = counts[counts > 0] / max(counts.sum(), 1)
        meta.update(
            version=TOKENS_VERSION,
            dtype=dtype.name,
            tokenizer=tokenizer.kind,
            vocab_size=tokenizer.vocab_size,
            eot_id=tokenizer.eot_id,
            source=source,
            unigram_entropy=float(-(p * np.log(p)).sum()),
        )
        (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def _check_sizes(meta: dict[str, Any], seq_len: int) -> None:
    """Every split must hold one window of seq_len + 1 tokens (inputs plus shifted targets)."""
    tokens, documents = meta["tokens"], meta["documents"]
    short = next((n for n in SPLITS if tokens[n] < seq_len + 1), None)
    if short is None:
        return
    advice = (
        "lower data.seq_len or data.val_fraction/data.test_fraction, or add data"
        if short == "train"
        else f"lower data.seq_len, raise data.{short}_fraction, or add data"
    )
    if min(documents.values()) <= 1:
        advice += " (or cut files into more documents with data.sample_by: line | paragraph)"
    raise DataError(
        f"data.seq_len: the {short} split has {tokens[short]} tokens, fewer than seq_len + 1 = {seq_len + 1} "
        f"(train/val/test: {'/'.join(str(tokens[n]) for n in SPLITS)} tokens from "
        f"{'/'.join(str(documents[n]) for n in SPLITS)} documents); {advice}"
    )


def _hash(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()
