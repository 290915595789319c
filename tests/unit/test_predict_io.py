"""The parts of `trainpipe predict` that move rows: readers (a registry), chunking, part files and
the published output — in-process, on real files, no model."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainpipe.errors import ConfigError
from trainpipe.predict import readers
from trainpipe.predict.batch import chunks
from trainpipe.predict.writers import done_parts, publish, write_part


def test_chunks_have_chunk_rows_rows_whatever_the_readers_batches() -> None:
    sizes = [3, 5, 7, 1, 6]
    start, batches = 0, []
    for size in sizes:
        batches.append(pa.record_batch({"x": list(range(start, start + size))}))
        start += size
    cut = list(chunks(iter(batches), 4))
    assert [c.num_rows for c in cut] == [4, 4, 4, 4, 4, 2]
    assert [v for c in cut for v in c.column("x").to_pylist()] == list(range(22))


def test_a_reader_is_chosen_by_name_or_extension_and_a_new_one_is_one_registration(
    tmp_path: Path,
) -> None:
    assert readers.reader_for({"reader": "auto", "path": "x.PARQUET"}).name == "parquet"
    assert readers.reader_for({"reader": "auto", "path": "x.jsonl"}).name == "jsonl"
    with pytest.raises(ConfigError, match=r"data.path: cannot tell how to read 'x.xlsx'"):
        readers.reader_for({"reader": "auto", "path": "x.xlsx"})
    with pytest.raises(ConfigError, match=r"data.reader: unknown reader 'sql'"):
        readers.reader_for({"reader": "sql", "path": None})
    # what issue 17 (SQL) or 16 (a folder of images) adds: one ReaderKind, chosen by name
    kind = readers.register_reader(
        readers.ReaderKind("lines", (), "trainpipe.predict.readers:TextReader")
    )
    try:
        (tmp_path / "p").write_text("a\r\nb\n\nc")
        reader = readers.reader_for({"reader": "lines", "path": str(tmp_path / "p")}).open(
            {"path": str(tmp_path / "p")}
        )
        rows = [v for b in reader.batches() for v in b.column("prompt").to_pylist()]
        assert kind.name in readers.READERS and reader.columns == ["prompt"]
        assert rows == ["a", "b", "", "c"]  # every line one prompt, blank ones included
    finally:
        del readers.READERS["lines"]


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_parts_publish_as_one_file_with_types_unified_over_the_parts(
    tmp_path: Path, suffix: str
) -> None:
    parts = tmp_path / "parts"
    write_part(parts, 0, pa.table({"id": pa.array([None, None]), "p": [0.5, 0.25]}))
    write_part(parts, 1, pa.table({"id": ["c"], "p": [1.0]}))
    assert done_parts(parts) == 2
    output = tmp_path / f"out{suffix}"
    publish(parts, 2, output)
    if suffix == ".parquet":
        table = pq.read_table(output)
        assert table.schema.field("id").type == pa.string()
        assert table.to_pylist() == [
            {"id": None, "p": 0.5},
            {"id": None, "p": 0.25},
            {"id": "c", "p": 1.0},
        ]
    elif suffix == ".csv":
        assert output.read_text().splitlines() == ['"id","p"', ",0.5", ",0.25", '"c",1']
    else:
        rows = [json.loads(line) for line in output.read_text().splitlines()]
        assert rows == [{"id": None, "p": 0.5}, {"id": None, "p": 0.25}, {"id": "c", "p": 1.0}]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["parts", output.name])
