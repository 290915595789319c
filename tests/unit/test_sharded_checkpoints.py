"""Sharded (torch.distributed.checkpoint) checkpoint directories get the guarantees of checkpoint
files: found by discovery, validated before resuming (a damaged one is skipped), published by one
rename, pruned by keep_last, and readable whole in one process (eval, export, registration)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed.checkpoint as dcp

from trainpipe.callbacks.resume_checkpoint import ResumeCheckpoint
from trainpipe.runtime.checkpoint_io import (
    META_FILE,
    checkpoint_contents,
    load_checkpoint_file,
    publish_directory,
    step_checkpoints,
)
from trainpipe.runtime.resume import checkpoint_problem, newest_valid_checkpoint

FINGERPRINT = "abc123"


def weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"model.wte.weight": torch.randn(8, 4), "model.ln_f.bias": torch.randn(4)}


def write_sharded(path: Path, step: int = 4) -> Path:
    """A checkpoint laid out as FSDP2Strategy writes it (here from one process)."""
    state = weights()
    optimizer = {"state": {name: {"exp_avg": torch.zeros_like(t)} for name, t in state.items()}}
    dcp.save({"state_dict": state, "optimizer_0": optimizer}, checkpoint_id=str(path), no_dist=True)
    identity = {"config_fingerprint": FINGERPRINT, "mlflow_run_id": "r"}
    meta = {"loops": {}, "callbacks": {"RunIdentity": identity}, "global_step": step, "epoch": 0}
    torch.save(meta, path / META_FILE)
    return path


def test_discovery_finds_files_and_directories_newest_first(tmp_path: Path) -> None:
    write_sharded(tmp_path / "step-00000008.ckpt")
    torch.save({}, tmp_path / "step-00000004.ckpt")
    (tmp_path / ".step-00000012.ckpt.tmp123").mkdir()  # a staging dir: never a checkpoint
    found = step_checkpoints(tmp_path)
    assert [(s, p.name, p.is_dir()) for s, p in found] == [
        (8, "step-00000008.ckpt", True),
        (4, "step-00000004.ckpt", False),
    ]


def test_a_sharded_checkpoint_is_validated_without_loading_its_tensors(tmp_path: Path) -> None:
    path = write_sharded(tmp_path / "step-00000004.ckpt")
    contents = checkpoint_contents(path)
    assert contents["global_step"] == 4
    assert contents["state_dict"] == contents["optimizer_states"] == "sharded"
    assert checkpoint_problem(path, FINGERPRINT) is None
    assert "different model/data config" in checkpoint_problem(path, "other")


def test_a_truncated_shard_or_missing_metadata_is_a_problem(tmp_path: Path) -> None:
    truncated = write_sharded(tmp_path / "a.ckpt")
    shard = next(truncated.glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[:10])
    assert "truncated" in checkpoint_problem(truncated, FINGERPRINT)
    no_meta = write_sharded(tmp_path / "b.ckpt")
    (no_meta / META_FILE).unlink()
    assert checkpoint_problem(no_meta, FINGERPRINT).startswith("unreadable")


def test_resume_skips_a_damaged_sharded_checkpoint(tmp_path: Path) -> None:
    write_sharded(tmp_path / "step-00000004.ckpt", step=4)
    newest = write_sharded(tmp_path / "step-00000008.ckpt", step=8)
    next(newest.glob("*.distcp")).unlink()
    assert newest_valid_checkpoint(tmp_path, FINGERPRINT) == tmp_path / "step-00000004.ckpt"


def test_one_process_reads_the_full_weights_of_a_sharded_checkpoint(tmp_path: Path) -> None:
    loaded = load_checkpoint_file(write_sharded(tmp_path / "c.ckpt"))
    assert loaded["global_step"] == 4 and "optimizer_states" not in loaded
    for name, tensor in weights().items():
        assert torch.equal(loaded["state_dict"][name], tensor), name


def test_publishing_renames_the_staging_directory_over_any_older_one(tmp_path: Path) -> None:
    target = write_sharded(tmp_path / "step-00000004.ckpt", step=4)
    staging = write_sharded(tmp_path / ".step-00000004.ckpt.tmp1", step=44)
    publish_directory(staging, target)
    assert not staging.exists()
    assert checkpoint_contents(target)["global_step"] == 44
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000004.ckpt"]


def test_keep_last_prunes_old_checkpoints_and_what_killed_saves_left(tmp_path: Path) -> None:
    def save_checkpoint(path: Path, weights_only: bool = False) -> None:
        # what the sharded strategy leaves behind (the whole state: weights_only is False)
        assert not weights_only
        write_sharded(Path(path))

    trainer = SimpleNamespace(
        global_step=0, train_dataloader=None, is_global_zero=True, save_checkpoint=save_checkpoint
    )
    callback = ResumeCheckpoint(every_n_steps=1, keep_last=2, dirpath=str(tmp_path))
    write_sharded(tmp_path / ".step-00000009.ckpt.tmp77")  # a killed save's shards
    (tmp_path / ".best-epoch001.ckpt.tmp78").write_bytes(b"half")  # and a killed file save
    for step in (1, 2, 3):
        trainer.global_step = step
        callback.save(trainer)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-00000002.ckpt",
        "step-00000003.ckpt",
    ]


@pytest.mark.parametrize("name", ["step-7.ckpt", "step-00000007.ckpt"])
def test_resume_accepts_a_directory_path(tmp_path: Path, name: str) -> None:
    from trainpipe.runtime.resume import resume_point

    path = write_sharded(tmp_path / name)
    assert resume_point(str(path), tmp_path, FINGERPRINT) == path
