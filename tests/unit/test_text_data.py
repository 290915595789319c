"""Text data layer: corpus sources, the document split, tokenising + packing, caches, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trainpipe.config.identity import data_files
from trainpipe.config.sources import stdlib_root
from trainpipe.data.text import load_corpus, split_documents
from trainpipe.data.tokens import prepare_text
from trainpipe.errors import ConfigError, DataError

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "dogs",
    "ran",
    "green",
    "café",
    "naïve",
    "日本",
    "🙂",
]
BYTES = {"kind": "bytes", "vocab_size": None, "path": None}


def make_docs(count: int, words: int = 12, seed: int = 0) -> list[str]:
    """Distinct small documents with some non-ASCII text."""
    rng = np.random.default_rng(seed)
    return [f"doc {i}: " + " ".join(rng.choice(WORDS, words)) + "." for i in range(count)]


def write_text_files(folder: Path, docs: list[str]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(docs):
        (folder / f"doc_{i:03d}.txt").write_text(doc, encoding="utf-8")
    return str(folder / "*.txt")


def text_conf(workdir: Path, **overrides: object) -> dict:
    conf = {
        "name": "text",
        "source": "text",
        "path": None,
        "text_column": "text",
        "sample_by": "document",
        "max_bytes": None,
        "val_fraction": 0.25,
        "test_fraction": 0.25,
        "seed": 42,
        "seq_len": 8,
        "batch_size": 4,
        "num_workers": 0,
        "num_proc": 2,
        "cache_dir": str(workdir / "cache"),
    }
    conf.update(overrides)
    return conf


def texts(ds) -> list[str]:
    return list(ds["text"])


def test_stdlib_source_reads_the_interpreters_own_python_files(workdir: Path) -> None:
    root = stdlib_root()
    files = data_files({"source": "stdlib"})
    assert root / "os.py" in files and files == sorted(files)
    assert all(f.suffix == ".py" and "site-packages" not in f.parts for f in files)
    corpus = load_corpus(text_conf(workdir, source="stdlib", max_bytes=20_000))
    docs = texts(corpus.documents["train"])
    assert docs[0] == files[0].read_text(encoding="utf-8")
    assert sum(len(d.encode()) for d in docs) == 20_000  # the cap is exact: the last file is cut
    assert str(root) in corpus.description


def test_text_jsonl_parquet_and_csv_sources_give_the_same_documents(workdir: Path) -> None:
    import pandas as pd

    docs = make_docs(6)
    frame = pd.DataFrame({"id": range(6), "body": docs})
    frame.to_json(workdir / "rows.jsonl", orient="records", lines=True, force_ascii=False)
    frame.to_parquet(workdir / "rows.parquet")
    frame.to_csv(workdir / "rows.csv", index=False)
    loaded = {"txt": load_corpus(text_conf(workdir, path=write_text_files(workdir / "txt", docs)))}
    for name in ("rows.jsonl", "rows.parquet", "rows.csv"):
        conf = text_conf(workdir, path=str(workdir / name), text_column="body")
        loaded[name] = load_corpus(conf)
    for corpus in loaded.values():
        assert corpus.documents["train"].column_names == ["text"]
        assert texts(corpus.documents["train"]) == docs
    # a list of paths and globs works too
    both = text_conf(
        workdir, path=[str(workdir / "txt/doc_000.txt"), str(workdir / "txt/doc_00[12].txt")]
    )
    assert texts(load_corpus(both).documents["train"]) == docs[:3]


def test_sample_by_document_paragraph_or_line(workdir: Path) -> None:
    paragraphs = ["one\ntwo", "three\nfour", "five\nsix"]
    (workdir / "book.txt").write_text("\n\n".join(paragraphs) + "\n")
    counts = {}
    for sample_by in ("document", "paragraph", "line"):
        conf = text_conf(workdir, path=str(workdir / "book.txt"), sample_by=sample_by)
        counts[sample_by] = [t for t in texts(load_corpus(conf).documents["train"]) if t]
    assert len(counts["document"]) == 1
    assert [p.strip() for p in counts["paragraph"]] == paragraphs
    assert counts["line"] == ["one", "two", "three", "four", "five", "six"]


def test_max_bytes_keeps_whole_documents_in_order_and_cuts_the_last(workdir: Path) -> None:
    docs = ["aaaa", "bbbb", "cé日d"]  # the last is 1 + 2 + 3 + 1 bytes
    path = write_text_files(workdir / "txt", docs)
    for cap, expected in [
        (8, docs[:2]),
        (6, ["aaaa", "bb"]),
        (11, ["aaaa", "bbbb", "cé"]),
        (99, docs),
    ]:
        corpus = load_corpus(text_conf(workdir, path=path, max_bytes=cap))
        assert texts(corpus.documents["train"]) == expected, cap


def test_document_split_is_a_pure_function_of_seed(workdir: Path) -> None:
    docs = make_docs(40)
    corpus = load_corpus(text_conf(workdir, path=write_text_files(workdir / "txt", docs)))

    def split(seed: int) -> dict[str, list[str]]:
        parts = split_documents(corpus.documents, 0.1, 0.2, seed)
        return {name: texts(part) for name, part in parts.items()}

    first, again, other = split(1), split(1), split(2)
    assert first == again and first != other
    assert [len(first[n]) for n in ("train", "val", "test")] == [28, 4, 8]
    assert sorted(first["train"] + first["val"] + first["test"]) == sorted(docs)
    # each part keeps the documents' own order
    assert first["train"] == [d for d in docs if d in set(first["train"])]


def test_prepare_packs_documents_between_end_of_text_ids(workdir: Path) -> None:
    docs = make_docs(12)
    conf = text_conf(workdir, path=write_text_files(workdir / "txt", docs))
    data = prepare_text(conf, BYTES)
    expected = split_documents(load_corpus(conf).documents, 0.25, 0.25, 42)
    assert data.vocab_size == 257 and data.eot_id == 256
    for name in ("train", "val", "test"):
        tokens = data.splits[name]
        assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16
        assert not tokens.flags.writeable
        assert tokens[0] == data.eot_id  # the first document follows an eot like the others
        parts = np.split(tokens, np.flatnonzero(tokens == 256))[1:]  # each starts with the eot
        packed = [part[1:].astype(np.uint8).tobytes().decode() for part in parts]
        assert packed == texts(expected[name])
        n_bytes = sum(len(d.encode()) for d in texts(expected[name]))
        assert data.documents[name] == len(expected[name]) and data.bytes[name] == n_bytes
        assert data.tokens[name] == len(tokens) == n_bytes + len(expected[name])
        assert data.bytes_per_token[name] == pytest.approx(n_bytes / len(tokens))
    p = np.bincount(data.splits["train"]) / len(data.splits["train"])
    assert data.unigram_entropy == pytest.approx(-(p[p > 0] * np.log(p[p > 0])).sum())
    meta = json.loads((data.token_dir / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and meta["tokenizer"] == "bytes"


def test_second_prepare_reuses_every_cache(workdir: Path) -> None:
    # 600 lines: enough documents for the tokenising .map to run in 2 processes
    lines = make_docs(600, words=3)
    (workdir / "lines.txt").write_text("\n".join(lines) + "\n")
    conf = text_conf(workdir, path=str(workdir / "lines.txt"), sample_by="line", num_proc=2)
    conf.update(val_fraction=0.1, test_fraction=0.1)
    first = prepare_text(conf, BYTES)
    map_caches = sorted((workdir / "cache").rglob("cache-*.arrow"))
    files = {p: p.stat().st_mtime_ns for p in (workdir / "cache").rglob("*") if p.is_file()}
    assert any("_of_00002" in p.name for p in map_caches), "the .map did not use 2 processes"
    second = prepare_text(conf, BYTES)
    assert not first.cache_reused and second.cache_reused
    assert second.split_digest == first.split_digest and second.tokens == first.tokens
    now = {p: p.stat().st_mtime_ns for p in (workdir / "cache").rglob("*") if p.is_file()}
    assert {p: t for p, t in now.items() if p.suffix != ".lock"} == {
        p: t for p, t in files.items() if p.suffix != ".lock"
    }
    # without the packed tokens, the tokenising .map is loaded from datasets' cache, not rerun
    import shutil

    shutil.rmtree(first.token_dir)
    third = prepare_text(conf, BYTES)
    assert sorted((workdir / "cache").rglob("cache-*.arrow")) == map_caches
    assert np.array_equal(third.splits["train"], first.splits["train"])


def test_digests_follow_the_data_and_the_splits_follow_split_and_tokenizer(workdir: Path) -> None:
    path = write_text_files(workdir / "txt", make_docs(12))
    conf = text_conf(workdir, path=path)
    base = prepare_text(conf, BYTES)
    reseeded = prepare_text(text_conf(workdir, path=path, seed=7), BYTES)
    assert reseeded.split_digest != base.split_digest and reseeded.digest == base.digest
    resplit = prepare_text(text_conf(workdir, path=path, val_fraction=0.3), BYTES)
    assert resplit.split_digest != base.split_digest
    bpe = {"kind": "bpe", "vocab_size": 300, "path": None}
    assert prepare_text(conf, bpe).split_digest != base.split_digest
    (workdir / "txt" / "doc_000.txt").write_text("changed text, longer than before")
    changed = prepare_text(conf, BYTES)
    assert changed.split_digest != base.split_digest and changed.digest != base.digest


def test_bpe_learns_from_the_train_split_only(workdir: Path) -> None:
    rng = np.random.default_rng(3)
    words = ["".join(rng.choice(list("bcdfghjklmnpqrstvwxz"), 6)) for _ in range(12)]
    docs = [f" {w}" * 40 for w in words]
    conf = text_conf(workdir, path=write_text_files(workdir / "txt", docs))
    data = prepare_text(conf, {"kind": "bpe", "vocab_size": 512, "path": None})
    split = split_documents(load_corpus(conf).documents, 0.25, 0.25, 42)
    for name, one_token in (("train", True), ("val", False), ("test", False)):
        for doc in texts(split[name]):
            word = doc.split()[0]
            assert (len(data.tokenizer.encode_batch([f" {word}"])[0]) == 1) is one_token, (
                name,
                word,
            )
        packed = data.splits[name]
        assert data.tokenizer.decode(packed[1:]).split("<|endoftext|>") == texts(split[name])


@pytest.mark.parametrize(
    ("make", "overrides", "needle"),
    [
        (None, {"path": "nowhere/*.txt"}, "data.path: no file matches 'nowhere/*.txt'"),
        ("jsonl", {"text_column": "body"}, "data.text_column: column 'body' not found in"),
        ("parquet", {"text_column": "body"}, "(columns: id, content)"),
        ("csv", {"text_column": "body"}, "(columns: id, content)"),
        ("jsonl", {"text_column": "id"}, "data.text_column: column 'id'"),
        ("empty", {}, "data.path: 'book.txt' has no text"),
        ("blank_lines", {"sample_by": "line"}, "has no text"),
        ("txt", {"seq_len": 400}, "data.seq_len: the train split has"),
        ("txt", {"seq_len": 100, "val_fraction": 0.05}, "raise data.val_fraction"),
        ("txt", {"sample_by": "sentence"}, "data.sample_by: must be one of"),
        ("mixed", {}, "mixes formats (json, text)"),
    ],
)
def test_bad_text_data_is_one_clear_line(
    workdir: Path, make: str | None, overrides: dict, needle: str
) -> None:
    import pandas as pd

    frame = pd.DataFrame({"id": [1, 2], "content": ["some text", "more text"]})
    path = {"jsonl": "rows.jsonl", "parquet": "rows.parquet", "csv": "rows.csv"}.get(
        make, "book.txt"
    )
    if make == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif make == "parquet":
        frame.to_parquet(path)
    elif make == "csv":
        frame.to_csv(path, index=False)
    elif make == "empty":
        Path(path).write_text("")
    elif make == "blank_lines":
        Path(path).write_text("\n\n\n")
    elif make == "txt":
        write_text_files(workdir / "txt", make_docs(8))
        path = "txt/*.txt"
    elif make == "mixed":
        write_text_files(workdir / "txt", make_docs(2))
        frame.to_json("txt/rows.jsonl", orient="records", lines=True)
        path = "txt/*"
    conf = text_conf(workdir, path=path)
    conf.update(overrides)
    with pytest.raises((DataError, ConfigError)) as caught:
        prepare_text(conf, BYTES)
    message = str(caught.value)
    assert needle in message and "\n" not in message
    # a split too small for one window: the message gives every split's size
    too_small = "seq_len" in needle or "val_fraction" in needle
    assert ("train/val/test:" in message and "tokens from" in message) is too_small


def test_a_file_not_in_the_encoding_is_named_or_skipped_and_counted(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_text_files(workdir / "docs", make_docs(8))
    (workdir / "docs" / "latin.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    conf = text_conf(workdir, path="docs")
    with pytest.raises(DataError) as caught:
        prepare_text(conf, BYTES)
    message = str(caught.value)
    assert "docs/latin.txt is not utf-8 text" in message and "\n" not in message
    assert "data.on_decode_error=skip" in message
    with caplog.at_level("INFO", logger="trainpipe"):
        skipped = prepare_text({**conf, "on_decode_error": "skip"}, BYTES)
    assert sum(skipped.documents.values()) == 8 and skipped.skipped_files == 1
    assert "1 file(s) skipped: not utf-8" in caplog.text
    read = prepare_text({**conf, "encoding": "latin-1"}, BYTES)  # every file is latin-1 too
    assert sum(read.documents.values()) == 9 and read.skipped_files == 0
    with pytest.raises(ConfigError, match="data.encoding: unknown encoding 'utf-9'"):
        prepare_text({**conf, "encoding": "utf-9"}, BYTES)


def test_the_data_summary_shows_the_data_digest(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_text_files(workdir / "docs", make_docs(8))
    with caplog.at_level("INFO", logger="trainpipe"):
        prepared = prepare_text(text_conf(workdir, path="docs"), BYTES)
    # the digest `trainpipe models list` shows (dataset_digest), not the token splits' digest
    assert f"data digest {prepared.digest}," in caplog.text
    assert prepared.split_digest not in caplog.text


def test_hub_text_source_offline_fails_fast(workdir: Path) -> None:
    with pytest.raises(DataError, match="data.name: hub dataset 'someone/not-cached'"):
        load_corpus(text_conf(workdir, source="hub", name="someone/not-cached"))


def test_the_stdlib_corpus_reads_and_hashes_only_the_files_its_cap_needs() -> None:
    every = data_files({"source": "stdlib", "max_bytes": None})
    assert every and not any("site-packages" in p.parts for p in every)
    capped = data_files({"source": "stdlib", "max_bytes": 300_000})
    assert capped == every[: len(capped)]  # a prefix, in the corpus's order
    sizes = [p.stat().st_size for p in capped]
    assert sum(sizes[:-1]) < 300_000 <= sum(sizes)  # enough for the cap, and no more
