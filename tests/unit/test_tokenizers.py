"""Tokenizers: bytes, a cached byte-level BPE, pretrained tokenizer.json files; save → load."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import tokenizers as hf

from trainpipe.data import tokenizers as tok_module
from trainpipe.data.tokenizers import ByteTokenizer, build_tokenizer, load_tokenizer
from trainpipe.errors import ConfigError, DataError

SAMPLE = "héllo wörld — 日本語 🙂\r\n\ttabs"
CORPUS = [
    "the cat sat on the mat. the dog sat on the log.",
    "the cat and the dog ran past the green hills.",
    "a naïve café served the cat and the dog.",
] * 5


def bpe(tmp_path: Path, vocab_size: int = 300, docs: list[str] = CORPUS):
    train = datasets.Dataset.from_dict({"text": docs})
    return build_tokenizer({"kind": "bpe", "vocab_size": vocab_size}, train, tmp_path / "cache")


def test_byte_tokenizer_round_trips_any_text() -> None:
    tok = ByteTokenizer()
    assert tok.vocab_size == 257 and tok.eot_id == 256
    ids = tok.encode_batch([SAMPLE, ""])
    assert ids == [list(SAMPLE.encode("utf-8")), []]
    assert tok.decode(ids[0]) == SAMPLE
    assert tok.decode(np.array([104, 105, 256, 104])) == "hi<|endoftext|>h"
    assert tok.decode(list("é".encode())[:1]) == "\ufffd"  # half a character: replaced, no error
    flat, lengths = tok.encode_flat([SAMPLE, "ab"])
    assert flat.tolist() == ids[0] + [97, 98] and lengths.tolist() == [len(ids[0]), 2]


def test_every_tokenizer_saves_files_that_load_back_the_same(tmp_path: Path) -> None:
    for tok in (ByteTokenizer(), bpe(tmp_path)):
        files = tok.save(tmp_path / tok.kind)
        assert all(f.is_file() and f.parent == tmp_path / tok.kind for f in files)
        loaded = load_tokenizer(tmp_path / tok.kind)
        assert (loaded.kind, loaded.vocab_size, loaded.eot_id) == (
            tok.kind,
            tok.vocab_size,
            tok.eot_id,
        )
        assert loaded.encode_batch([SAMPLE]) == tok.encode_batch([SAMPLE])
        assert loaded.fingerprint == tok.fingerprint


def test_bpe_trains_compresses_and_round_trips_unseen_text(tmp_path: Path) -> None:
    tok = bpe(tmp_path)
    assert tok.kind == "bpe" and 257 < tok.vocab_size <= 300
    assert tok.tokenizer.id_to_token(tok.eot_id) == "<|endoftext|>"
    assert len(tok.encode_batch(["the cat sat on the mat."])[0]) < len("the cat sat on the mat.")
    ids = tok.encode_batch([SAMPLE])[0]  # never seen in training: falls back to bytes
    assert tok.decode(ids) == SAMPLE
    assert tok.decode([*ids, tok.eot_id]) == SAMPLE + "<|endoftext|>"
    flat, lengths = tok.encode_flat([SAMPLE, "the cat"])
    assert flat.tolist() == [i for doc in tok.encode_batch([SAMPLE, "the cat"]) for i in doc]
    assert lengths.sum() == len(flat)


def test_bpe_is_cached_by_train_data_and_vocab_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = bpe(tmp_path)

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("retrained a cached tokenizer")

    monkeypatch.setattr(tok_module, "train_bpe", no_training)
    assert bpe(tmp_path).fingerprint == first.fingerprint
    with pytest.raises(AssertionError, match="retrained"):
        bpe(tmp_path, vocab_size=280)
    with pytest.raises(AssertionError, match="retrained"):
        bpe(tmp_path, docs=CORPUS[:3])


@pytest.mark.parametrize(
    ("conf", "error", "needle"),
    [
        (
            {"kind": "bpe", "vocab_size": 256},
            ConfigError,
            "tokenizer.vocab_size: a byte-level BPE needs at least 257",
        ),
        ({"kind": "bpe", "vocab_size": None}, ConfigError, "tokenizer.vocab_size"),
        ({"kind": "words"}, ConfigError, "tokenizer.kind: must be one of bytes, bpe, pretrained"),
        (
            {"kind": "pretrained", "path": "no/such/dir"},
            DataError,
            "tokenizer.path: no tokenizer.json in 'no/such/dir'",
        ),
        ({"kind": "pretrained", "path": None}, DataError, "tokenizer.path"),
    ],
)
def test_bad_tokenizer_config_is_one_clear_line(
    tmp_path: Path, conf: dict, error: type, needle: str
) -> None:
    with pytest.raises(error) as caught:
        build_tokenizer(conf, datasets.Dataset.from_dict({"text": ["x"]}), tmp_path)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def word_level(tmp_path: Path, specials: list[str]) -> Path:
    """A tiny pretrained-style tokenizer.json (what a user points tokenizer.path at)."""
    vocab = {token: i for i, token in enumerate([*specials, "[UNK]", "hello", "world"])}
    tokenizer = hf.Tokenizer(hf.models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = hf.pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(specials)
    tmp_path.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    return tmp_path


def test_pretrained_tokenizer_json_with_endoftext(tmp_path: Path) -> None:
    trained = bpe(tmp_path)
    trained.tokenizer.save(str(tmp_path / "tokenizer.json"))  # only tokenizer.json, as on the Hub
    tok = build_tokenizer({"kind": "pretrained", "path": str(tmp_path)}, None, tmp_path / "cache")
    assert tok.kind == "pretrained" and tok.eot_id == trained.eot_id
    assert tok.vocab_size == trained.vocab_size
    assert tok.encode_batch([SAMPLE]) == trained.encode_batch([SAMPLE])


@pytest.mark.parametrize("eos", ["</s>", {"content": "</s>", "special": True}])
def test_pretrained_tokenizer_falls_back_to_its_eos_token(tmp_path: Path, eos: object) -> None:
    folder = word_level(tmp_path / "tok", ["<pad>", "</s>"])
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": eos}))
    tok = build_tokenizer({"kind": "pretrained", "path": str(folder)}, None, tmp_path)
    assert tok.eot_id == 1 and tok.vocab_size == 5
    assert tok.encode_batch(["hello world"]) == [[3, 4]]


def test_pretrained_tokenizer_without_an_end_of_text_token_is_rejected(tmp_path: Path) -> None:
    folder = word_level(tmp_path / "tok", ["<pad>"])
    with pytest.raises(DataError, match=r"tokenizer.path: .*has no <\|endoftext\|> token"):
        build_tokenizer({"kind": "pretrained", "path": str(folder)}, None, tmp_path)
