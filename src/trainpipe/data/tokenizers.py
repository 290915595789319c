"""Tokenizers for language modelling: raw bytes, a byte-level BPE trained on the train split, or a
pretrained `tokenizer.json`, all behind one small interface.

Every tokenizer has an end-of-text id (`eot_id`) that the packer puts between documents, and
`save(dir)` writes the files a model ships with; `load_tokenizer(dir)` reads them back.
BPE and pretrained tokenizers are saved as a Hugging Face `tokenizer.json` plus a
`tokenizer_config.json` naming the end-of-text token, the layout `transformers` reads too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import tokenizers as hf
from filelock import FileLock

from trainpipe.errors import ConfigError, DataError
from trainpipe.runtime.atomic import atomic_path

log = logging.getLogger(__name__)

EOT_TOKEN = "<|endoftext|>"
CONFIG_FILE = "tokenizer_config.json"
TOKENIZER_FILE = "tokenizer.json"
KINDS = ("bytes", "bpe", "pretrained")
BYTE_VOCAB = 257  # 256 byte values + end-of-text
BPE_VERSION = "bpe-v1"  # bump when train_bpe changes, so cached tokenizers are retrained


class TextTokenizer(ABC):
    """Text ↔ token ids, with an end-of-text id between documents."""

    kind: str
    vocab_size: int
    eot_id: int
    fingerprint: str  # changes whenever the ids any text encodes to may change

    @abstractmethod
    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without any special token."""

    @abstractmethod
    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Text of `ids`; the end-of-text id shows as `<|endoftext|>`."""

    @abstractmethod
    def save(self, directory: str | Path) -> list[Path]:
        """Write the files `load_tokenizer` needs into `directory`; return their paths."""

    def encode_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """All texts' ids as one flat array plus each text's length (what the packer consumes)."""
        ids = self.encode_batch(texts)
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(
            (i for doc in ids for i in doc), dtype=np.int64, count=int(lengths.sum())
        )
        return flat, lengths


class ByteTokenizer(TextTokenizer):
    """UTF-8 bytes as ids 0..255, end-of-text 256: nothing to train, nothing to download."""

    kind = "bytes"
    vocab_size = BYTE_VOCAB
    eot_id = 256
    fingerprint = "bytes-v1"

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(text.encode("utf-8")) for text in texts]

    def encode_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        # bytes are already the ids: no Python int per token
        encoded = [text.encode("utf-8") for text in texts]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        return np.frombuffer(b"".join(encoded), dtype=np.uint8), lengths

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if ids.size and (ids.min() < 0 or ids.max() > self.eot_id):
            raise ValueError(f"byte token ids are 0..{self.eot_id}, got {ids.min()}..{ids.max()}")
        pieces = np.split(ids, np.flatnonzero(ids == self.eot_id))
        # every piece after the first starts with the end-of-text id that split it off
        texts = [pieces[0], *(piece[1:] for piece in pieces[1:])]
        return EOT_TOKEN.join(
            t.astype(np.uint8).tobytes().decode("utf-8", errors="replace") for t in texts
        )

    def save(self, directory: str | Path) -> list[Path]:
        path = Path(directory) / CONFIG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        config = {"trainpipe_tokenizer": self.kind, "vocab_size": self.vocab_size, "eot_id": 256}
        path.write_text(json.dumps(config, indent=2) + "\n")
        return [path]


class JsonTokenizer(TextTokenizer):
    """A Hugging Face `tokenizers.Tokenizer` (our trained BPE or a pretrained tokenizer.json)."""

    def __init__(self, tokenizer: hf.Tokenizer, eot_token: str, kind: str) -> None:
        self.tokenizer = tokenizer
        self.kind = kind
        self.eot_token = eot_token
        eot_id = tokenizer.token_to_id(eot_token)
        if eot_id is None:
            raise ValueError(f"token {eot_token!r} is not in the vocabulary")
        self.eot_id = eot_id
        # max id + 1, not the count: a vocabulary may have holes and the embedding must cover them
        self.vocab_size = max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1
        self.fingerprint = hashlib.sha256(tokenizer.to_str().encode()).hexdigest()[:16]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # no post-processor specials (BOS/EOS): the packer adds the end-of-text ids itself
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return self.tokenizer.decode(np.asarray(ids).ravel().tolist(), skip_special_tokens=False)

    def save(self, directory: str | Path) -> list[Path]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(directory / TOKENIZER_FILE))
        config = {
            "trainpipe_tokenizer": self.kind,
            # lets transformers.AutoTokenizer load the same files
            "tokenizer_class": "PreTrainedTokenizerFast",
            "eos_token": self.eot_token,
        }
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return [directory / TOKENIZER_FILE, directory / CONFIG_FILE]


def check_tokenizer_config(conf: dict[str, Any]) -> None:
    """Reject a bad `tokenizer` section before any data is read."""
    kind = conf.get("kind")
    if kind not in KINDS:
        raise ConfigError("tokenizer.kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "bpe":
        size = conf.get("vocab_size")
        if not isinstance(size, int) or size < BYTE_VOCAB:
            raise ConfigError(
                "tokenizer.vocab_size",
                f"a byte-level BPE needs at least {BYTE_VOCAB} ids (256 bytes + end-of-text), got {size!r}",
            )
    if kind == "pretrained":
        path = conf.get("path")
        if not path or not (Path(path).expanduser() / TOKENIZER_FILE).is_file():
            raise DataError(f"tokenizer.path: no {TOKENIZER_FILE} in {path!r}")


def build_tokenizer(
    conf: dict[str, Any], train: datasets.Dataset, cache_dir: str | Path
) -> TextTokenizer:
    """The tokenizer a resolved `tokenizer` section names; a BPE is trained on `train` (cached)."""
    check_tokenizer_config(conf)
    if conf["kind"] == "bytes":
        return ByteTokenizer()
    if conf["kind"] == "pretrained":
        return load_tokenizer(Path(conf["path"]).expanduser(), key="tokenizer.path")
    return _cached_bpe(train, conf["vocab_size"], Path(cache_dir).expanduser())


def _cached_bpe(train: datasets.Dataset, vocab_size: int, cache_dir: Path) -> TextTokenizer:
    # keyed by the train split's fingerprint (datasets chains it from the source files and every
    # transform), so the same data and size load the tokenizer the previous run trained
    key = hashlib.sha256(f"{BPE_VERSION}|{train._fingerprint}|{vocab_size}".encode()).hexdigest()
    target = cache_dir / "tokenizers" / f"bpe-{vocab_size}-{key[:16]}" / TOKENIZER_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / ".lock")):
        if not target.is_file():
            with atomic_path(target) as staging:
                train_bpe(_texts(train), vocab_size).save(str(staging))
    return JsonTokenizer(hf.Tokenizer.from_file(str(target)), EOT_TOKEN, kind="bpe")


def train_bpe(texts: Iterator[list[str]], vocab_size: int) -> hf.Tokenizer:
    """A GPT-2-style byte-level BPE: every byte is in the alphabet, so any text encodes."""
    tokenizer = hf.Tokenizer(hf.models.BPE())
    tokenizer.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = hf.decoders.ByteLevel()
    trainer = hf.trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT_TOKEN],
        initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    started = time.perf_counter()
    tokenizer.train_from_iterator(texts, trainer=trainer)
    log.info(
        "trained a byte-level BPE of %d tokens in %.1fs",
        tokenizer.get_vocab_size(),
        time.perf_counter() - started,
    )
    return tokenizer


def _texts(split: datasets.Dataset, batch_size: int = 1000) -> Iterator[list[str]]:
    for batch in split.iter(batch_size=batch_size):
        yield [text for text in batch["text"] if text]


def load_tokenizer(directory: str | Path, key: str = "tokenizer.path") -> TextTokenizer:
    """Read what `save` wrote, or any directory holding a Hugging Face `tokenizer.json`.

    The end-of-text token is `<|endoftext|>` if the vocabulary has it, else the `eos_token` of
    `tokenizer_config.json`. Errors name `key`, the config key the directory came from.
    """
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    if config.get("trainpipe_tokenizer") == "bytes":
        return ByteTokenizer()
    tokenizer_path = directory / TOKENIZER_FILE
    if not tokenizer_path.is_file():
        raise DataError(f"{key}: no {TOKENIZER_FILE} in {str(directory)!r}")
    tokenizer = hf.Tokenizer.from_file(str(tokenizer_path))
    eos = config.get("eos_token")
    if isinstance(eos, dict):  # transformers writes AddedToken objects as dicts
        eos = eos.get("content")
    eot = EOT_TOKEN if tokenizer.token_to_id(EOT_TOKEN) is not None else eos
    if eot is None or tokenizer.token_to_id(eot) is None:
        raise DataError(
            f"{key}: {tokenizer_path} has no {EOT_TOKEN} token and {CONFIG_FILE} names no eos_token in its vocabulary"
        )
    return JsonTokenizer(tokenizer, eot, kind=config.get("trainpipe_tokenizer", "pretrained"))
