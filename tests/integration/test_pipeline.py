"""`trainpipe pipeline` end to end on a CSV, against a real sqlite MLflow store: every stage runs
once, a rerun reuses them all, an evaluation setting reruns evaluate onwards, new data reruns
everything; a parent run with one nested run per stage; `--if-data-changed` both ways.

The tests share one working dir and run in order (each builds on the registry the one before
left), so they are a module of fixtures, each one pipeline command.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TINY, run_cli, with_empty_store, write_csv
from tests.integration.mlflow_store import client_for, runs_of

pytestmark = pytest.mark.slow

DATA = ["data=csv", "data.path=rows.csv", "data.target=species"]
PIPELINE = ["pipeline", *DATA, *TINY]
STAGES = ["prepare", "train", "evaluate", "register", "promote"]


@dataclass
class Ran:
    result: subprocess.CompletedProcess
    seconds: float

    @property
    def parent_id(self) -> str:
        found = re.search(r"pipeline run\s+([0-9a-f]{32})", self.result.stdout)
        assert found, self.result.stdout[-2000:] + self.result.stderr[-2000:]
        return found.group(1)

    @property
    def cached(self) -> list[str]:
        found = re.search(r"cached stages: (.*)", self.result.stdout)
        assert found, self.result.stdout[-2000:]
        return [] if found.group(1) == "none" else found.group(1).split(", ")


def preparations(ran: Ran) -> list[str]:
    """How each data preparation of the command (the pipeline's, the training job's) found the
    data's cache: "built" or "reused"."""
    return re.findall(r"^data .*, cache (built|reused), ", ran.result.stdout, re.MULTILINE)


def scorings(ran: Ran) -> int:
    return len(re.findall(r"^scored on the test split", ran.result.stdout, re.MULTILINE))


def pipeline(workdir: Path, *extra: str) -> Ran:
    started = time.monotonic()
    result = run_cli([*PIPELINE, *extra], cwd=workdir)
    return Ran(result, time.monotonic() - started)


def stage_runs(workdir: Path, parent_id: str) -> dict[str, object]:
    client = client_for(workdir)
    experiment = client.get_experiment_by_name("rows").experiment_id
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent_id}'")
    return {run.data.tags["trainpipe.pipeline.stage"]: run for run in children}


def training_runs(workdir: Path) -> list:
    return [r for r in runs_of(workdir, "rows") if "trainpipe.data.digest" in r.data.tags]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, store_template: Path) -> Path:
    directory = with_empty_store(tmp_path_factory.mktemp("pipeline"), store_template)
    write_csv(directory / "rows.csv")
    return directory


@pytest.fixture(scope="module")
def first(workdir: Path) -> Ran:
    ran = pipeline(workdir)
    assert ran.result.returncode == 0, ran.result.stderr[-3000:]
    return ran


@pytest.fixture(scope="module")
def rerun(workdir: Path, first: Ran) -> Ran:
    ran = pipeline(workdir)
    assert ran.result.returncode == 0, ran.result.stderr[-3000:]
    return ran


@pytest.fixture(scope="module")
def new_eval_setting(workdir: Path, rerun: Ran) -> Ran:
    ran = pipeline(workdir, "pipeline.evaluate.batch_size=32")
    assert ran.result.returncode == 0, ran.result.stderr[-3000:]
    return ran


def test_the_first_run_runs_every_stage_and_promotes_the_candidate(
    workdir: Path, first: Ran
) -> None:
    assert first.cached == []
    # the pipeline prepares the data once (the training job, a process of its own, loads that
    # cache) and scores the candidate once: the gate judges evaluate's scores
    assert preparations(first) == ["built", "reused"], first.result.stdout[-3000:]
    assert scorings(first) == 1, first.result.stdout[-3000:]
    stages = stage_runs(workdir, first.parent_id)
    assert sorted(stages) == sorted(STAGES)
    assert {s.data.tags["trainpipe.pipeline.cached"] for s in stages.values()} == {"false"}
    # one tracker writes the pipeline's runs: the parent's journal, its stages' nested beside it
    # (train's run is the training job's own, journaled by the job)
    (journal,) = workdir.glob("**/pipeline/rows/runs/*/tracking")
    assert (journal / "journal.jsonl").is_file()
    assert sorted(p.parent.name for p in journal.glob("*/journal.jsonl")) == sorted(
        set(STAGES) - {"train"}
    )
    (training,) = training_runs(workdir)
    assert stages["train"].info.run_id == training.info.run_id  # the job's own run, nested
    client = client_for(workdir)
    champion = client.get_model_version_by_alias("rows", "champion")
    assert str(champion.version) == "1" and champion.run_id == training.info.run_id
    assert champion.tags["trainpipe.pipeline.run_id"] == first.parent_id
    assert "trainpipe.pipeline.test/acc" in champion.tags
    assert "test/acc" in stages["evaluate"].data.metrics
    parent = client.get_run(first.parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["trainpipe.pipeline.outcome"] == "promoted"
    # told apart in the UI's table by the data and the change
    assert parent.info.run_name == f"rows-pipeline-{champion.tags['dataset_digest']}-1"


def test_a_rerun_with_nothing_changed_reuses_every_stage_in_seconds(
    workdir: Path, first: Ran, rerun: Ran
) -> None:
    assert rerun.cached == STAGES
    assert "every stage cached" in rerun.result.stdout
    name = client_for(workdir).get_run(rerun.parent_id).info.run_name
    assert name.startswith("rows-pipeline-") and name.endswith("-2")  # the same data, again
    assert rerun.seconds < min(45.0, first.seconds / 2), (rerun.seconds, first.seconds)
    assert len(training_runs(workdir)) == 1  # nothing trained
    before, now = stage_runs(workdir, first.parent_id), stage_runs(workdir, rerun.parent_id)
    assert sorted(now) == sorted(STAGES)  # cached stages get a nested run too
    for stage, run in now.items():
        assert run.data.tags["trainpipe.pipeline.cached"] == "true", stage
        assert run.data.tags["trainpipe.pipeline.source_run"] == before[stage].info.run_id
        assert run.info.run_name == f"{stage} (cached)"


def test_an_evaluation_setting_reruns_only_evaluate_onwards(
    workdir: Path, first: Ran, new_eval_setting: Ran
) -> None:
    assert new_eval_setting.cached == ["prepare", "train"]
    assert preparations(new_eval_setting) == ["reused"] and scorings(new_eval_setting) == 1
    stages = stage_runs(workdir, new_eval_setting.parent_id)
    ran = {s for s, run in stages.items() if run.data.tags["trainpipe.pipeline.cached"] == "false"}
    assert ran == {"evaluate", "register", "promote"}
    assert stages["evaluate"].data.params["batch_size"] == "32"
    assert len(training_runs(workdir)) == 1
    version = client_for(workdir).get_model_version("rows", "1")
    assert version.tags["trainpipe.pipeline.run_id"] == new_eval_setting.parent_id


SCORE = ["pipeline.evaluate.batch_size=32", "pipeline.score.enabled=true"]
SCORE += ["pipeline.score.data_path=rows.csv", "pipeline.score.output=scores.csv"]
SCORE += ["pipeline.score.overrides=['probabilities=true']"]


@pytest.fixture(scope="module")
def scored(workdir: Path, new_eval_setting: Ran) -> Ran:
    ran = pipeline(workdir, *SCORE)
    assert ran.result.returncode == 0, ran.result.stderr[-3000:]
    return ran


def test_the_score_stage_scores_a_file_with_the_new_champion(workdir: Path, scored: Ran) -> None:
    assert scored.cached == STAGES  # the stages before it are unchanged
    stages = stage_runs(workdir, scored.parent_id)
    tags = stages["score"].data.tags
    assert tags["trainpipe.pipeline.cached"] == "false"
    assert tags["trainpipe.run_type"] == "predict"
    assert tags["trainpipe.predict.model"] == "models:/rows/1"  # the champion, by its version
    scores = (workdir / "scores.csv").read_text().splitlines()
    assert scores[0] == '"prediction","probability_kind0","probability_kind1","probability_kind2"'
    assert len(scores) == 1 + 240 and tags["trainpipe.predict.rows"] == "240"
    # the same champion and input: cached; the output file changed: scored again
    again = pipeline(workdir, *SCORE)
    assert again.result.returncode == 0 and again.cached == [*STAGES, "score"]
    (workdir / "scores.csv").write_text("edited\n")
    redone = pipeline(workdir, *SCORE)
    assert redone.result.returncode == 0 and redone.cached == STAGES
    assert len((workdir / "scores.csv").read_text().splitlines()) == 1 + 240


def test_if_data_changed_does_nothing_while_the_champion_saw_this_data(
    workdir: Path, new_eval_setting: Ran
) -> None:
    runs_before = len(runs_of(workdir, "rows"))
    ran = pipeline(workdir, "--if-data-changed")
    assert ran.result.returncode == 0, ran.result.stderr[-2000:]
    assert "data unchanged since champion v1 of rows" in ran.result.stdout
    assert len(runs_of(workdir, "rows")) == runs_before


@pytest.fixture(scope="module")
def new_data(workdir: Path, new_eval_setting: Ran) -> Ran:
    write_csv(workdir / "rows.csv", seed=1)
    return pipeline(workdir, "--if-data-changed")


def test_new_data_reruns_every_stage_and_the_refusal_says_how_to_force_it(
    workdir: Path, new_data: Ran
) -> None:
    ran = new_data
    assert ran.cached == [], ran.result.stderr[-3000:]
    # the champion was trained on other splits: an objection, not a second scoring
    assert preparations(ran) == ["built", "reused"] and scorings(ran) == 1
    assert len(training_runs(workdir)) == 2
    client = client_for(workdir)
    assert client.get_model_version("rows", "2").tags["trainpipe.pipeline.run_id"] == ran.parent_id
    outcome = client.get_run(ran.parent_id).data.tags["trainpipe.pipeline.outcome"]
    # the champion was trained on other splits: its scores are not comparable, the gate refuses
    # (a normal outcome of the pipeline, exit 1 like `models promote`)
    assert (outcome, ran.result.returncode) == ("refused", 1), ran.result.stderr[-3000:]
    digest = client.get_model_version("rows", "2").tags["dataset_digest"]
    assert client.get_run(ran.parent_id).info.run_name == f"rows-pipeline-{digest}-1"
    assert "refused (why: below)" in ran.result.stdout
    refusal = ran.result.stderr[ran.result.stderr.index("trainpipe: version 2 of rows") :]
    assert "was trained on other splits" in refusal
    assert 'trainpipe models promote rows --version 2 --force --reason "…"' in refusal
    assert max(len(line) for line in refusal.splitlines()) <= 100, refusal


def test_forcing_it_records_that_the_champion_was_not_compared(
    workdir: Path, new_data: Ran
) -> None:
    forced = run_cli(
        ["models", "promote", "rows", "--version", "2", "--force", "--reason", "new data"],
        cwd=workdir,
    )
    assert forced.returncode == 0, forced.stderr[-2000:]
    history = run_cli(["models", "history", "rows"], cwd=workdir)
    last = history.stdout.splitlines()[-1]
    assert "FORCED" in last and "not compared with champion v1" in last, last
    assert "no champion to compare with" not in last
    tags = client_for(workdir).get_model_version("rows", "2").tags
    assert tags["audit.latest"] == last  # one readable tag, the latest event
    assert [k for k in tags if k.startswith("audit.")] == ["audit.latest"]
