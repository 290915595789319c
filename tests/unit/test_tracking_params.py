"""Params are the resolved config with dotted keys; secrets never reach MLflow."""

from __future__ import annotations

from trainpipe.tracking.lineage import command_line
from trainpipe.tracking.params import MAX_PARAM_LENGTH, flatten


def test_flatten_uses_dotted_keys_and_keeps_lists_readable() -> None:
    flat = flatten(
        {
            "model": {"net": {"hidden_sizes": [256, 128]}, "optimizer": {"lr": 0.002}},
            "seed": 42,
            "run_name": None,
        }
    )
    assert flat == {
        "model.net.hidden_sizes": "[256, 128]",
        "model.optimizer.lr": "0.002",
        "seed": "42",
        "run_name": "null",
    }


def test_secrets_are_masked() -> None:
    flat = flatten(
        {
            "logger": {
                "tracking_uri": "http://alice:hunter2@tracking.internal:5000",
                "api_token": "abc",
            },
            "data": {"hub_password": "pw"},
        }
    )
    assert "hunter2" not in "".join(flat.values())
    assert flat["logger.tracking_uri"] == "http://alice:***@tracking.internal:5000"
    assert flat["logger.api_token"] == "***"
    assert flat["data.hub_password"] == "***"


def test_long_values_are_cut_to_mlflows_limit() -> None:
    flat = flatten({"data": {"features": [f"column_{i}" for i in range(2000)]}})
    assert len(flat["data.features"]) == MAX_PARAM_LENGTH


def test_command_line_masks_secret_overrides() -> None:
    line = command_line(["trainpipe", "train", "+logger.token=s3cret", "model=cnn"])
    assert "s3cret" not in line and "model=cnn" in line
