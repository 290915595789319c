"""Data layer: sources, checks with clear messages, deterministic splits, the `.map` cache, batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_csv
from trainpipe.data.tables import prepare_table, target_kind
from trainpipe.errors import DataError


def prepare(conf: dict, kind: str = "classes"):
    return prepare_table(conf, kind)


def data_conf(workdir: Path, **overrides: object) -> dict:
    conf = {
        "kind": "table",
        "source": "digits",
        "name": "digits",
        "path": None,
        "target": "label",
        "features": None,
        "image_shape": [1, 8, 8],
        "val_fraction": 0.1,
        "test_fraction": 0.1,
        "seed": 42,
        "cache_dir": str(workdir / "cache"),
        "batch_size": 64,
        "num_workers": 0,
    }
    conf.update(overrides)
    return conf


def test_digits_splits_are_complete_disjoint_and_seeded(workdir: Path) -> None:
    data = prepare(data_conf(workdir))
    sizes = {name: len(split) for name, split in data.splits.items()}
    assert sum(sizes.values()) == 1797
    assert (
        len(data.class_values) == 10 and data.num_features == 64 and data.input_shape == (1, 8, 8)
    )
    rows = {
        name: {tuple(r) for r in split.with_format("numpy")["features"]}
        for name, split in data.splits.items()
    }
    assert (
        not (rows["train"] & rows["test"]) or len(rows["train"] & rows["test"]) < 5
    )  # digits has a few duplicate images
    same = prepare(data_conf(workdir))
    other = prepare(data_conf(workdir, seed=7))
    assert np.array_equal(same.splits["test"]["target"], data.splits["test"]["target"])
    assert same.split_digest == data.split_digest
    assert not np.array_equal(other.splits["test"]["target"], data.splits["test"]["target"])
    assert other.split_digest != data.split_digest
    assert other.digest == data.digest  # same source content, split differently


def test_preprocessing_cache_is_reused_on_the_second_run(workdir: Path) -> None:
    conf = data_conf(workdir)
    first = prepare(conf)
    cache_files = sorted((workdir / "cache").rglob("cache-*.arrow"))
    second = prepare(conf)
    assert not first.cache_reused
    assert cache_files, "the .map preprocessing wrote no cache file"
    assert second.cache_reused
    assert sorted((workdir / "cache").rglob("cache-*.arrow")) == cache_files
    assert second.seconds < first.seconds


def test_csv_with_string_labels_and_default_features(workdir: Path) -> None:
    path = write_csv(workdir / "rows.csv")
    data = prepare(
        data_conf(
            workdir, source="csv", path=str(path), target="species", image_shape=None, name="csv"
        )
    )
    assert data.feature_names == ["a", "b", "c", "d"]
    assert data.class_values == ["kind0", "kind1", "kind2"]
    assert data.input_shape == (4,)
    assert data.feature_std.shape == (4,)


def test_parquet_and_json_sources(workdir: Path) -> None:
    import pandas as pd

    frame = pd.read_csv(write_csv(workdir / "rows.csv"))
    frame.to_parquet(workdir / "rows.parquet")
    frame.to_json(workdir / "rows.jsonl", orient="records", lines=True)
    for source, name in (("parquet", "rows.parquet"), ("json", "rows.jsonl")):
        data = prepare(
            data_conf(
                workdir, source=source, path=str(workdir / name), target="species", image_shape=None
            )
        )
        assert data.num_features == 4 and len(data.class_values) == 3


@pytest.mark.parametrize(
    ("make", "overrides", "needle"),
    [
        (None, {"path": "nowhere/*.csv"}, "data.path: no file matches 'nowhere/*.csv'"),
        ("empty", {}, "is empty"),
        ("header_only", {}, "has no rows"),
        ("rows", {"target": "kind"}, "data.target: column 'kind' not found"),
        ("rows", {"features": ["a", "zz"]}, "data.features: column 'zz' not found"),
        ("id_column", {"categorical": ["code"]}, "data.categorical: column 'code' has a different"),
        ("rows", {"categorical": ["nope"]}, "data.categorical: column 'nope' not found"),
        ("bad_date", {}, "column 'when' holds dates, but '2024-13-45' does not parse"),
        ("single_class", {}, "data.target: column 'species' has a single class"),
        (
            "missing_target",
            {"drop_missing_target": False},
            "data.target: column 'species' has 1 missing value(s)",
        ),
        ("infinite_value", {}, "data.features: column 'b' has 2 non-finite value(s)"),
        ("rows", {"image_shape": [1, 3, 3]}, "data.image_shape: [1, 3, 3] holds 9 values"),
    ],
)
def test_bad_data_is_a_clear_data_error(
    workdir: Path, make: str | None, overrides: dict, needle: str
) -> None:
    path = workdir / "rows.csv"
    if make == "rows":
        write_csv(path)
    elif make == "empty":
        path.write_text("")
    elif make == "header_only":
        path.write_text("a,b,species\n")
    elif make == "id_column":  # a text column with one value per row, declared a category
        path.write_text("a,code,species\n" + "".join(f"{i},c{i},k{i % 2}\n" for i in range(30)))
    elif make == "bad_date":
        days = [f"2024-01-{d:02d}" for d in range(1, 29)] + ["2024-13-45"]
        path.write_text(
            "a,when,species\n" + "".join(f"{i},{d},k{i % 2}\n" for i, d in enumerate(days))
        )
    elif make == "single_class":
        path.write_text("a,b,species\n1,2,k\n3,4,k\n")
    elif make == "missing_target":
        path.write_text("a,b,species\n1,2,\n3,4,k2\n5,6,k1\n")
    elif make == "infinite_value":
        path.write_text("a,b,species\n1,inf,k1\n3,-inf,k2\n5,6,k1\n")
    conf = data_conf(workdir, source="csv", path=str(path), target="species", image_shape=None)
    conf.update(overrides)
    with pytest.raises(DataError) as caught:
        prepare(conf)
    assert needle in str(caught.value)


def test_hub_dataset_offline_fails_fast_with_a_clear_message(workdir: Path) -> None:
    import time

    started = time.perf_counter()
    with pytest.raises(DataError, match="data.name: hub dataset 'someone/not-cached'"):
        prepare(
            data_conf(
                workdir, source="hub", name="someone/not-cached", target="label", image_shape=None
            )
        )
    assert time.perf_counter() - started < 10  # no retry loop (a generous bound, not a benchmark)


def test_loader_serves_every_row_once_per_epoch_in_batches(workdir: Path) -> None:
    import torch

    from trainpipe.data.loader import batch_loader

    data = prepare(data_conf(workdir))
    loader = batch_loader(data.splits["train"], batch_size=64, shuffle=True, seed=1)
    seen = []
    for features, labels in loader:
        assert features.dtype == torch.float32 and labels.dtype == torch.int64
        assert features.shape[1] == 64 and len(features) == len(labels) <= 64
        seen.append(labels)
    assert sum(len(b) for b in seen) == len(data.splits["train"])
    assert torch.equal(
        torch.cat(seen).sort().values, torch.as_tensor(data.splits["train"]["target"]).sort().values
    )
    first_epoch = torch.cat(
        [labels for _, labels in batch_loader(data.splits["train"], 64, True, seed=1)]
    )
    again = torch.cat(
        [labels for _, labels in batch_loader(data.splits["train"], 64, True, seed=1)]
    )
    assert torch.equal(first_epoch, again)  # data order is a function of the seed


def write_table(path: Path, target: list) -> Path:
    rng = np.random.default_rng(0)
    lines = ["x,y,target"] + [f"{rng.normal():.4f},{rng.normal():.4f},{value}" for value in target]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([0.5, 1.25, 2.0, 3.5] * 10, "values"),  # non-integer floats: a quantity to regress
        ([1.0, 2.0, 3.0, 2.0] * 10, "classes"),  # a few whole-number floats: labels
        ([float(v) for v in range(25)] * 2, "values"),  # many whole-number floats: a quantity
        ([3, 1, 2, 1] * 10, "classes"),
        (["a", "b", "a", "c"] * 10, "classes"),
    ],
)
def test_target_kind_is_inferred_from_the_target_column(
    workdir: Path, values: list, kind: str
) -> None:
    path = write_table(workdir / "t.csv", values)
    assert target_kind(data_conf(workdir, source="csv", path=str(path), target="target")) == kind


def test_regression_target_keeps_float_values_and_train_statistics(workdir: Path) -> None:
    values = [round(0.37 * i, 2) for i in range(200)]
    path = write_table(workdir / "t.csv", values)
    data = prepare(
        data_conf(workdir, source="csv", path=str(path), target="target", image_shape=None),
        "values",
    )
    assert data.class_values is None
    train = np.asarray(data.splits["train"]["target"], dtype=np.float64)
    assert train.dtype == np.float64 and not np.allclose(train, train.round())
    assert data.target_mean == pytest.approx(train.mean(), rel=1e-5)
    assert data.target_std == pytest.approx(train.std(), rel=1e-5)


def test_integer_classes_keep_their_type_and_numeric_order(workdir: Path) -> None:
    path = write_table(workdir / "t.csv", list(range(12)) * 10)
    data = prepare(
        data_conf(workdir, source="csv", path=str(path), target="target", image_shape=None)
    )
    assert data.class_values == list(range(12))  # 2 before 10, ints not strings
    assert all(type(v) is int for v in data.class_values)


def test_a_directory_path_reads_the_files_inside(workdir: Path) -> None:
    folder = workdir / "parts"
    folder.mkdir()
    write_csv(folder / "one.csv", rows=120, seed=0)
    write_csv(folder / "two.csv", rows=120, seed=0)
    data = prepare(
        data_conf(workdir, source="csv", path=str(folder), target="species", image_shape=None)
    )
    assert sum(data.split_sizes().values()) == 240


def load_tab_separated(conf: dict):
    """The loader of a source this test registers: tab-separated files."""
    import datasets

    from trainpipe.config.sources import source_of

    files = [str(f) for f in source_of(conf).files(conf)]
    return datasets.load_dataset(
        "csv", data_files=files, sep="\t", cache_dir=str(Path(conf["cache_dir"]) / "hf")
    )


def test_a_registered_source_is_validated_named_digested_and_loaded(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainpipe.config import sources
    from trainpipe.config.compose import compose
    from trainpipe.config.identity import source_digest
    from trainpipe.config.validate import validate
    from trainpipe.errors import ConfigError

    table = write_csv(workdir / "rows.csv").read_text().replace(",", "\t")
    path = workdir / "rows.tsv"
    path.write_text(table)
    overrides = ["data=csv", "data.source=tsv", f"data.path={path}", "data.target=species"]
    with pytest.raises(ConfigError, match="data.source: table data comes from digits, csv"):
        validate(compose("train", overrides), "train")  # not registered yet

    monkeypatch.setitem(
        sources.SOURCES,
        "tsv",
        sources.Source("tsv", {"table": f"{__name__}:load_tab_separated"}, key="data.path"),
    )
    conf = validate(compose("train", overrides), "train")
    assert conf["experiment_name"] == "rows"
    data = prepare(conf["data"] | {"cache_dir": str(workdir / "cache")})
    assert data.feature_names == ["a", "b", "c", "d"] and data.split_sizes()["train"] > 150
    assert data.digest == source_digest(conf["data"])  # the source digests its files' bytes
    path.write_text(table + "0\t0\t0\t0\tkind0\n")
    assert source_digest(conf["data"]) != data.digest
    with pytest.raises(ConfigError, match="data.path: is required for data source 'tsv'"):
        validate(
            compose("train", [*overrides[:2], "data.path=null", "data.target=species"]), "train"
        )


def jitter(features, target):
    """A random per-sample transform (module level: worker processes import it)."""
    import torch

    return features + torch.randn(features.shape), target


def test_a_random_transform_gives_the_same_batches_in_workers_and_after_a_resume(
    workdir: Path,
) -> None:
    import torch

    from trainpipe.data.loader import batch_loader

    train = prepare(data_conf(workdir)).splits["train"]

    def loader(workers: int):
        made = batch_loader(train, 128, True, seed=1, num_workers=workers, transform=jitter)
        made.batch_sampler.set_epoch(2)
        return made

    torch.manual_seed(0)
    plain = [x for x, _ in batch_loader(train, 128, True, seed=1)]
    draw_after_plain = torch.rand(1)
    torch.manual_seed(0)
    in_process = [x for x, _ in loader(0)]
    assert torch.equal(torch.rand(1), draw_after_plain)  # the process's own RNG is left alone
    assert not torch.equal(in_process[0], plain[0])  # the transform ran
    interrupted = loader(2)
    batches = iter(interrupted)
    first = [next(batches)[0] for _ in range(3)]
    state = interrupted.state_dict()
    assert state == {"epoch": 2, "served": 3}  # delivered, not what the workers were handed
    resumed = loader(2)
    resumed.load_state_dict(state)
    served = first + [x for x, _ in resumed]
    assert len(served) == len(in_process)
    assert all(torch.equal(a, b) for a, b in zip(served, in_process, strict=True))


def test_files_behind_fsspec_urls_are_copied_hashed_and_read(workdir: Path) -> None:
    import fsspec

    from trainpipe.config.sources import SOURCES

    memory = fsspec.filesystem("memory")
    text = write_csv(workdir / "rows.csv").read_text()
    for part, lines in enumerate(
        (text.splitlines()[:120], text.splitlines()[:1] + text.splitlines()[120:])
    ):
        memory.pipe(f"memory://lake/rows-{part}.csv", ("\n".join(lines) + "\n").encode())
    remote = data_conf(
        workdir, source="csv", path="memory://lake/*.csv", target="species", image_shape=None,
        storage_options={},
    )  # fmt: skip
    data = prepare(remote)
    assert sum(data.split_sizes().values()) == 240 and data.class_values == [
        "kind0",
        "kind1",
        "kind2",
    ]
    # file:// with the filesystem's own options, and the digest follows the bytes
    local = data_conf(
        workdir, source="csv", path=f"file://{workdir}/rows.csv", target="species",
        image_shape=None, storage_options={"auto_mkdir": False},
    )  # fmt: skip
    before = SOURCES["csv"].digest(local)
    assert prepare(local).digest == before
    memory.pipe("memory://lake/rows-0.csv", b"a,b,c,d,species\n1,2,3,4,kind0\n")
    assert SOURCES["csv"].digest(remote) != data.digest
    with pytest.raises(DataError, match="data.path: no file matches memory://nowhere/"):
        prepare({**remote, "path": "memory://nowhere/*.csv"})
