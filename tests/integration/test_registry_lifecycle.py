"""`trainpipe models …` on real trained models and real MLflow stores: challenger → champion
through the gate, rollback, retire, force, the audit log; bad input; a real `mlflow server`.

Two versions of `digits` are trained through the CLI on the same data, seed and split (same split
digest): version 1 on 2 batches (worse), version 2 on 12 (better). The numbers are checked, not
assumed. Most steps call the command's `main` in this process (the same code the CLI runs, without
paying a Python start-up and the torch import each time); one promotion runs the real CLI.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import pytest

from tests.conftest import TINY, run_cli, with_empty_store
from tests.integration.mlflow_server import MlflowServer
from tests.integration.mlflow_store import client_for

pytestmark = pytest.mark.slow

SHORT = [o for o in TINY if not o.startswith("trainer.limit_train_batches")]
WORSE = [*SHORT, "trainer.limit_train_batches=2"]
BETTER = [*SHORT, "trainer.limit_train_batches=12"]
ACTOR = "test-operator"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, store_template: Path) -> Path:
    """A working dir whose sqlite store holds `digits` versions 1 (worse) and 2 (better)."""
    workdir = with_empty_store(tmp_path_factory.mktemp("lifecycle"), store_template)
    for overrides in (WORSE, BETTER):
        result = run_cli(["train", *overrides], cwd=workdir)
        assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.fixture
def here(store: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in the store's dir (the models' recorded data paths are relative to it) as ACTOR."""
    monkeypatch.chdir(store)
    monkeypatch.setenv("TRAINPIPE_ACTOR", ACTOR)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return store


def models(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """`trainpipe models ARGS` in this process: (exit code, stdout, stderr)."""
    from trainpipe.commands.models import main

    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse's usage errors
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def shown_scores(output: str) -> dict[str, tuple[str, float]]:
    """role → (version, test/acc) from promote's `challenger  version 2  test/acc 0.9 …` lines."""
    found = re.findall(
        r"^(challenger|champion)\s+version (\d+)\s+.*test/acc ([\d.]+)", output, re.M
    )
    return {role: (version, float(acc)) for role, version, acc in found}


def aliases(workdir: Path) -> dict[str, str]:
    model = client_for(workdir).get_registered_model("digits")
    return {alias: str(number) for alias, number in model.aliases.items()}


def version_tags(workdir: Path, version: str) -> dict[str, str]:
    return client_for(workdir).get_model_version("digits", version).tags


def test_registering_makes_the_challenger_and_rollback_needs_a_previous_champion(
    here: Path, capsys: pytest.CaptureFixture
) -> None:
    assert aliases(here) == {"challenger": "2"}  # moved from version 1 when 2 was registered
    code, out, err = models(capsys, "list", "digits")
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["2"][1:3] == ["challenger", "challenger"] and rows["1"][1:3] == ["—", "—"]
    assert out.splitlines()[0].split()[:4] == ["version", "aliases", "status", "test/acc"]
    code, out, err = models(capsys, "rollback", "digits")
    assert code == 2 and err.count("\n") == 1 and "no previous champion" in err, err


def test_promote_refuse_rollback_retire_force_and_the_audit_log(
    here: Path, capsys: pytest.CaptureFixture
) -> None:
    from trainpipe.registry import champion, promote, score

    uri = "sqlite:///mlflow.db"
    # 1. no champion yet: only the floor applies — refused under a floor, promoted without one
    code, out, err = models(capsys, "promote", "digits", "--version", "1", "--floor", "0.99")
    assert code == 1 and "floor 0.99" in out and "not promoted" in err
    assert "champion" not in aliases(here)
    code, out, _ = models(capsys, "promote", "digits", "--version", "1")
    assert code == 0 and aliases(here)["champion"] == "1"
    worse = score("models:/digits/1", uri)
    assert shown_scores(out)["challenger"] == (
        "1",
        pytest.approx(worse.metrics["test/acc"], abs=1e-4),
    )

    # 2. the challenger (version 2) is better on the same held-out split: promoted (real CLI)
    result = run_cli(["models", "promote", "digits"], cwd=here, TRAINPIPE_ACTOR=ACTOR)
    assert result.returncode == 0, result.stderr[-2000:]
    shown = shown_scores(result.stdout)
    assert shown["challenger"][0] == "2" and shown["champion"][0] == "1"
    assert shown["challenger"][1] > shown["champion"][1]
    assert aliases(here) == {"champion": "2"}  # no longer the challenger
    better = score("models:/digits/2", uri)
    assert better.split_digest == worse.split_digest == version_tags(here, "1")["split_digest"]
    assert better.metrics["test/acc"] > worse.metrics["test/acc"]
    assert str(champion(uri, "digits").version) == "2"

    # 3. the worse version is refused against it: exit 1, both scores and the rule
    code, out, err = models(capsys, "promote", "digits", "--version", "1")
    assert code == 1, err
    shown = shown_scores(out)
    assert shown["challenger"] == ("1", pytest.approx(worse.metrics["test/acc"], abs=1e-4))
    assert shown["champion"] == ("2", pytest.approx(better.metrics["test/acc"], abs=1e-4))
    assert "rule        test/acc (max): challenger >= champion" in out
    assert err.count("\n") == 1 and err.startswith("trainpipe: version 1 not promoted")
    assert aliases(here)["champion"] == "2"
    code, _, err = models(capsys, "promote", "digits")  # nothing holds `challenger` any more
    assert code == 2 and "no alias 'challenger'" in err

    # 4. rollback: the previous champion is back
    code, out, _ = models(capsys, "rollback", "digits", "--reason", "drill")
    assert code == 0 and aliases(here)["champion"] == "1" and "was 2" in out

    # 5. retire version 2; retired, it is refused even though the gate would pass
    code, out, _ = models(capsys, "retire", "digits", "--version", "2", "--reason", "bad labels")
    assert code == 0 and version_tags(here, "2")["retired"] == "true"
    assert version_tags(here, "2")["retired_reason"] == "bad labels"
    code, out, err = models(capsys, "promote", "digits", "--version", "2")
    assert code == 1 and "version 2 is retired (bad labels)" in err
    assert "champion    version 1" in out  # scored anyway: the numbers are shown

    # 6. …unless forced, with a reason (the public API, as the pipeline calls it)
    decision = promote(uri, "digits", "2", force=True, reason="labels fixed upstream")
    assert decision.promoted and decision.forced and decision.champion_before == "1"
    assert decision.objections == ["version 2 is retired (bad labels)"]
    assert decision.scores["challenger"]["test/acc"] > decision.scores["champion"]["test/acc"]
    assert "retired" not in version_tags(here, "2") and aliases(here)["champion"] == "2"

    # 7. force over the gate itself
    code, out, _ = models(capsys, "promote", "digits", "--version", "1", "--force", "--reason", "x")
    assert code == 0 and "forced over: the gate refused" in out
    assert aliases(here)["champion"] == "1"

    # 8. the audit log: every change, in order, the same in the JSONL history and the tags
    code, out, _ = models(capsys, "history", "digits", "--json")
    history = [json.loads(line) for line in out.splitlines()]
    expected = [
        ("promote", "1", False, None),
        ("promote", "2", False, "1"),
        ("rollback", "1", None, "2"),
        ("retire", "2", None, None),
        ("promote", "2", True, "1"),
        ("promote", "1", True, "2"),
    ]
    assert [
        (e["action"], e["version"], e.get("forced"), e.get("champion_before")) for e in history
    ] == expected
    assert [e["seq"] for e in history] == [1, 2, 3, 4, 5, 6]
    assert [e["time"] for e in history] == sorted(e["time"] for e in history)
    assert all(e["actor"] == ACTOR and e["time"].endswith("Z") for e in history)
    assert [e["reason"] for e in history] == [
        None,
        None,
        "drill",
        "bad labels",
        "labels fixed upstream",
        "x",
    ]
    gate = history[1]["gate"]
    assert gate["rule"] == "test/acc (max): challenger >= champion"
    assert gate["challenger"]["test/acc"] == pytest.approx(better.metrics["test/acc"])
    assert gate["champion"]["test/acc"] == pytest.approx(worse.metrics["test/acc"])
    assert history[5]["overrode"][0].startswith("the gate refused")
    code, out, _ = models(capsys, "history", "digits")
    lines = out.splitlines()
    assert len(lines) == 6 and lines[5].startswith("0006") and "FORCED" in lines[5]
    assert "no champion to compare with" in lines[0] and "vs champion" in lines[1]
    # each version carries one readable tag, its latest event (the history holds them all):
    # version 1 was last promoted by event 6, version 2 by event 5
    for version, line in (("1", lines[5]), ("2", lines[4])):
        audit_tags = {k: v for k, v in version_tags(here, version).items() if "audit" in k}
        assert audit_tags == {"audit.latest": line}

    # the list shows where things stand
    code, out, _ = models(capsys, "list", "digits")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["1"][1:3] == ["champion", "champion"] and rows["2"][1:3] == ["—", "—"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["list", "nosuch"], "unknown registered model 'nosuch' (registered: digits)"),
        (["promote", "digits", "--version", "99"], "digits has no version 99"),
        (["promote", "digits", "--version", "nosuch"], "digits has no alias 'nosuch'"),
        (["retire", "digits", "--version", "@nosuch", "--reason", "r"], "no alias 'nosuch'"),
        (["promote", "digits", "--version", "1", "--force"], "--reason"),
        (["retire", "digits", "--version", "1"], "--reason"),
        (["history", "digits", "--tracking-uri", "sqlite:///elsewhere.db"], "no MLflow store"),
        (["promote", "digits", "--direction", "up"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    here: Path, capsys: pytest.CaptureFixture, args: list[str], says: str
) -> None:
    code, out, err = models(capsys, *args)
    assert code == 2 and says in err, err
    assert err.count("\n") == 1 and err.startswith("trainpipe: ") and not out
    assert not (here / "elsewhere.db").exists()


def test_promote_and_history_through_an_mlflow_server(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = MlflowServer(tmp_path)
    server.start()
    try:
        trained = run_cli(["train", *TINY], cwd=tmp_path, MLFLOW_TRACKING_URI=server.uri)
        assert trained.returncode == 0, trained.stderr[-3000:]
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("TRAINPIPE_ACTOR", "ci-bot")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)  # the default --tracking-uri
        code, out, err = models(capsys, "promote", "digits", "--reason", "first")
        assert code == 0, err
        assert "version 1 is now the champion of digits (the first)" in out
        code, _, err = models(capsys, "rollback", "digits")
        assert code == 2 and "no previous champion" in err
        code, out, _ = models(capsys, "history", "digits", "--json")
        (event,) = [json.loads(line) for line in out.splitlines()]
        assert (event["seq"], event["action"], event["version"]) == (1, "promote", "1")
        assert (event["actor"], event["reason"]) == ("ci-bot", "first")
        client = mlflow.MlflowClient(tracking_uri=server.uri)
        model_aliases = client.get_registered_model("digits").aliases
        assert {alias: str(number) for alias, number in model_aliases.items()} == {"champion": "1"}
        latest = client.get_model_version("digits", "1").tags["audit.latest"]
        assert latest.startswith(f"0001  {event['time']}  ci-bot  promote v1") and "first" in latest
        (audit_run,) = client.search_runs(
            [client.get_experiment_by_name("trainpipe-registry").experiment_id]
        )
        assert [a.path for a in client.list_artifacts(audit_run.info.run_id, "audit")] == [
            "audit/digits.jsonl"
        ]
    finally:
        server.stop()
