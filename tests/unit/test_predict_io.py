"""The parts of `trainpipe predict` that move rows: readers (a registry), chunking, part files and
the published output — in-process, on real files, no model."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainpipe.errors import ConfigError, DataError
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
    with pytest.raises(ConfigError, match=r"data.reader: unknown reader 'xlsx'"):
        readers.reader_for({"reader": "xlsx", "path": None})
    # a folder is images, a data.uri without a path is SQL; neither: data.path is asked for
    assert readers.reader_for({"reader": "auto", "path": str(tmp_path)}).name == "images"
    assert readers.reader_for({"reader": "auto", "path": None, "uri": "duckdb://"}).name == "sql"
    with pytest.raises(ConfigError, match=r"data.path: is required"):
        readers.reader_for({"reader": "auto", "path": None, "uri": None})
    # what SQL and a folder of images are too: one ReaderKind, chosen by name
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


def test_an_image_folder_is_its_pictures_in_sorted_order_and_its_digest_their_bytes(
    tmp_path: Path,
) -> None:
    from PIL import Image

    for name in ("b/2.png", "a/10.jpg", "a/1.png", ".hidden/3.png", "c/.4.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), (len(name) * 9, 0, 0)).save(tmp_path / name)
    (tmp_path / "a" / "notes.txt").write_text("not a picture")
    reader = readers.reader_for({"reader": "auto", "path": str(tmp_path)}).open(
        {"path": str(tmp_path)}
    )
    reader.match(
        ["img"], "image"
    )  # the model's image column: the same file, under the name it reads
    rows = [r for b in reader.batches() for r in b.to_pylist()]
    assert [r["path"] for r in rows] == ["a/1.png", "a/10.jpg", "b/2.png"]  # stable: resumable
    assert all(r["img"] == r["path"] for r in rows) and reader.rows == 3
    assert reader.passed == ["path"] and reader.base == tmp_path.resolve()
    before = reader.digest()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp_path / "b" / "2.png")
    assert readers.READERS["images"].open({"path": str(tmp_path)}).digest() != before
    with pytest.raises(DataError, match="reads the columns \\['a', 'b'\\] of a table"):
        reader.match(["a", "b"], "image")
    # a language model would "continue" the file names: refused, as is a table model
    with pytest.raises(DataError, match="a folder of images; this model was trained on text data"):
        reader.match(["prompt"], "text")


def test_sql_rows_stream_in_chunks_and_their_digest_does_not_depend_on_the_chunking(
    tmp_path: Path,
) -> None:
    import duckdb

    with duckdb.connect(str(tmp_path / "shop.duckdb")) as connection:
        connection.execute("CREATE TABLE t AS SELECT range AS id, range * 0.5 AS x FROM range(7)")
    data = {"reader": "auto", "path": None, "uri": f"duckdb:///{tmp_path}/shop.duckdb"}
    whole = readers.reader_for(data).open({**data, "table": "t", "query": None})
    small = readers.READERS["sql"].open({**data, "query": "SELECT * FROM t", "chunk_size": 3})
    assert [b.num_rows for b in small.batches()] == [3, 3, 1]
    assert small.columns == ["id", "x"] and small.rows == 7
    assert small.digest() == whole.digest()
    rows = [r for b in whole.batches() for r in b.to_pylist()]
    assert rows == [{"id": i, "x": i * 0.5} for i in range(7)]
    with pytest.raises(ConfigError, match="data.query: set exactly one of"):
        readers.READERS["sql"].open({**data, "table": "t", "query": "SELECT 1"})
    with pytest.raises(DataError, match="data.query: .*returned no rows"):
        readers.READERS["sql"].open({**data, "query": "SELECT * FROM t WHERE id < 0"})
    # a password is masked in the reader's own description and in the driver's errors
    secret = {**data, "uri": "postgresql+psycopg://me:s3cret@127.0.0.1:9/db", "table": "t"}
    with pytest.raises(DataError) as refused:
        readers.READERS["sql"].open(secret)
    assert "s3cret" not in str(refused.value) and "me:***@" in str(refused.value)
