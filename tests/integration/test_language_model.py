"""A GPT on real text through the real CLI: it learns, it resumes bit for bit, DDP agrees with one
process, the registered generator loads without pickle, and it round-trips through Hugging Face."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, run_cli, run_without_pickle, torchrun, with_empty_store
from tests.integration.mlflow_store import metric_steps, runs_of

pytestmark = pytest.mark.slow

# a real corpus (the first 300 KB of this Python's stdlib) and a small GPT: seconds per run on a CPU
TINY_LM = [
    "experiment=stdlib_gpt",
    "data.max_bytes=300000",
    "data.val_fraction=0.05",
    "data.test_fraction=0.05",
    "data.batch_size=8",
    "model.n_layer=2",
    "model.n_head=2",
    "model.d_model=64",
    "model.seq_len=64",
    "model.samples.max_new_tokens=32",
    "model.scheduler.warmup_steps=5",
    "model.optimizer.lr=0.003",
    "trainer.max_steps=60",
    "trainer.val_check_interval=null",  # the default of a run without an experiment config
    "trainer.limit_val_batches=20",
    "trainer.limit_test_batches=20",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, store_template: Path) -> Path:
    workdir = with_empty_store(tmp_path_factory.mktemp("lm"), store_template)
    # the progress display on, its output a file: lines, not bar frames
    result = run_cli(["train", *TINY_LM, "trainer.enable_progress_bar=true"], cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    (workdir / "train.out").write_text(result.stdout)
    (workdir / "train.err").write_text(result.stderr)
    return workdir


def test_the_model_learns_real_text_to_below_the_unigram_baseline(trained: Path) -> None:
    (run,) = runs_of(trained, "stdlib_gpt")
    assert run.info.status == "FINISHED"
    losses = [v for _, v in sorted(metric_steps(trained, run.info.run_id, "train/loss"))]
    assert len(losses) == 60
    assert sum(losses[-10:]) / 10 < 0.75 * sum(losses[:5]) / 5
    baseline = run.data.metrics["baseline/unigram_loss"]
    assert 2.0 < baseline < 6.0  # Python source bytes: a few nats per byte
    assert run.data.metrics["val/loss"] < baseline
    assert run.data.metrics["val/bpb"] == pytest.approx(
        run.data.metrics["val/loss"] / 0.6931 / 1.0, rel=0.05
    )
    assert {"test/loss", "test/ppl", "test/bpb", "perf/tokens_per_s"} <= set(run.data.metrics)
    (job_dir,) = (trained / "outputs" / "train" / "stdlib_gpt").iterdir()
    # max_steps ends inside the first epoch: validated every tenth of the run (the default)
    assert run.data.params["trainer.val_check_interval"] == "6"
    samples = sorted((job_dir / "samples").glob("step-*.txt"))
    assert [p.name for p in samples] == [f"step-{s:08d}.txt" for s in range(6, 61, 6)]
    assert "models:/stdlib_gpt/1" in (trained / "train.out").read_text()


def test_output_to_a_file_gets_progress_lines_with_the_eta_to_max_steps(trained: Path) -> None:
    out, err = (trained / "train.out").read_text(), (trained / "train.err").read_text()
    assert "━" not in out + err and "Epoch 0" not in out + err  # no bar frames
    assert re.search(r"^step 1/60 \(2%\)  epoch 0", out, re.M)
    final = r"^step 60/60 \(100%\)  train/loss [\d.]+  val/loss [\d.]+  .* trained in \d+"
    assert re.search(final, out, re.M), out[-3000:]


GENERATE_WITHOUT_PICKLE = """
import json
import mlflow, pandas as pd
mlflow.set_tracking_uri("sqlite:///mlflow.db")
model = mlflow.pyfunc.load_model("models:/stdlib_gpt/1")
greedy = {"max_new_tokens": 16, "temperature": 0.0}
a = model.predict(["def main(", "import "], params=greedy)
b = model.predict(pd.DataFrame({"prompt": ["def main(", "import "]}), params=greedy)
c = model.predict("def main(", params=greedy)
sampled = model.predict(["x = "], params={"max_new_tokens": 16, "seed": 3})
again = model.predict(["x = "], params={"max_new_tokens": 16, "seed": 3})
print(json.dumps({"a": list(a), "b": list(b), "c": list(c), "sampled": list(sampled), "again": list(again)}))
"""


def test_the_registered_generator_loads_without_pickle_and_generates(trained: Path) -> None:
    out = run_without_pickle(GENERATE_WITHOUT_PICKLE, trained)
    assert out["a"] == out["b"] and out["c"] == out["a"][:1]  # list, DataFrame, string: same answer
    assert all(isinstance(text, str) and text for text in out["a"])
    assert out["sampled"] == out["again"]  # seeded sampling is reproducible
    cli = run_cli(
        [
            "generate",
            "model_uri=models:/stdlib_gpt/1",
            "prompt=def main(",
            "max_new_tokens=16",
            "temperature=0",
        ],
        cwd=trained,
    )
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert cli.stdout.strip() == "def main(" + out["a"][0]
    assert "Downloading artifacts" not in cli.stderr


def test_export_to_hugging_face_gives_the_same_logits(trained: Path) -> None:
    transformers = pytest.importorskip("transformers")
    result = run_cli(["export", "models:/stdlib_gpt/1", "--format", "hf", "hf"], cwd=trained)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Downloading artifacts" not in result.stderr
    from trainpipe.loading import load_model

    predictor, _ = load_model("models:/stdlib_gpt/1", f"sqlite:///{trained}/mlflow.db")
    hf = transformers.GPT2LMHeadModel.from_pretrained(trained / "hf").eval()
    tokens = torch.randint(0, 257, (2, 64))
    with torch.no_grad():
        ours = predictor.model.eval()(tokens)[..., :257]
        theirs = hf(tokens).logits
    assert torch.allclose(ours, theirs, atol=1e-4)
    # a byte-level model exports a tokenizer transformers loads; it starts with end-of-text, as
    # trainpipe's generator does, so a prompt gives trainpipe's logits
    tokenizer = transformers.AutoTokenizer.from_pretrained(trained / "hf")
    encoded = tokenizer("def main(", return_tensors="pt")
    assert encoded.input_ids[0].tolist() == [256, *b"def main("]
    with torch.no_grad():
        ours = predictor.model.eval()(encoded.input_ids)[..., :257]
        assert torch.allclose(ours, hf(**encoded).logits, atol=1e-4)


def test_the_gate_compares_bits_per_byte(trained: Path) -> None:
    result = run_cli(["models", "promote", "stdlib_gpt"], cwd=trained)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rule        test/bpb (min): challenger <= champion" in result.stdout


def test_fine_tuning_starts_from_a_local_hugging_face_checkpoint(workdir: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        n_layer=1, n_head=2, n_embd=32, n_positions=128, vocab_size=300
    )
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(
        workdir / "hf_gpt2", safe_serialization=True
    )
    args = [
        *TINY_LM,
        "model.init_from=hf_gpt2",
        "trainer.max_steps=4",
        "trainer.val_check_interval=3",
    ]
    result = run_cli(["train", *args], cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    (job_dir,) = (workdir / "outputs" / "train" / "stdlib_gpt").iterdir()
    samples = sorted(p.name for p in (job_dir / "samples").glob("step-*.txt"))
    assert samples == ["step-00000003.txt", "step-00000004.txt"]  # the final weights too
    spec = json.loads((job_dir / "model" / "spec.json").read_text())
    assert (spec["gpt"]["n_layer"], spec["gpt"]["d_model"], spec["gpt"]["seq_len"]) == (1, 32, 64)
    too_long = run_cli(["train", *args, "model.seq_len=256"], cwd=workdir)
    assert too_long.returncode == 2
    assert "model.seq_len: is 256 but the init_from checkpoint has 128 positions" in too_long.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["data.source=text", "data.path=missing/*.txt"], "data.path: no file matches"),
        (
            ["data.source=text", "data.path=rows.jsonl", "data.text_column=body"],
            "data.text_column: column 'body' not found",
        ),
        (["data.source=text", "data.path=tiny.txt"], "fewer than seq_len + 1 = 65"),
        (["model.n_head=3"], "model.d_model: must be a multiple of model.n_head"),
        (["tokenizer=bpe", "tokenizer.vocab_size=100"], "tokenizer.vocab_size"),
        (["tokenizer=pretrained", "tokenizer.path=nowhere"], "tokenizer.path: no tokenizer.json"),
    ],
)
def test_bad_text_input_exits_2_with_one_line(
    empty_workdir: Path, args: list[str], needle: str
) -> None:
    (empty_workdir / "rows.jsonl").write_text('{"text": "hello"}\n{"text": "world"}\n')
    (empty_workdir / "tiny.txt").write_text("just a few words\n")
    result = run_cli(["train", *TINY_LM, *args], cwd=empty_workdir)
    assert result.returncode == 2, result.stderr[-2000:]
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (empty_workdir / "outputs").exists() and not (empty_workdir / "mlflow.db").exists()


def final_weights(workdir: Path) -> dict[str, torch.Tensor]:
    (job_dir,) = (workdir / "outputs" / "train" / "stdlib_gpt").iterdir()
    newest = max((job_dir / "checkpoints").glob("step-*.ckpt"))
    return torch.load(newest, weights_only=True)["state_dict"]


def test_a_killed_job_resumes_bit_for_bit(tmp_path: Path) -> None:
    """…and logs the same metric history: it resumes from the checkpoint written right after the
    step-12 validation, where Lightning's restart skips the repeated validation with one empty loop
    iteration that used to shift every later train/loss and val/* point by a step."""
    job = [
        *TINY_LM,
        "trainer.max_steps=24",
        "trainer.val_check_interval=12",
        "checkpoint.every_n_steps=6",
        "trainer.deterministic=true",
        "test_after_fit=false",
        "registry.register=false",
    ]
    (tmp_path / "ref").mkdir()
    (tmp_path / "killed").mkdir()
    assert run_cli(["train", *job], cwd=tmp_path / "ref").returncode == 0
    killed = run_cli(["train", *job], cwd=tmp_path / "killed", TRAINPIPE_INJECT_FAULT="kill@13")
    assert killed.returncode == -9
    resumed = run_cli(["train", *job], cwd=tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "exists and is not empty" not in resumed.stdout + resumed.stderr  # its own checkpoints
    assert "step-00000012.ckpt" in resumed.stdout + resumed.stderr  # resumed after validation
    reference, again = final_weights(tmp_path / "ref"), final_weights(tmp_path / "killed")
    for name, tensor in reference.items():
        assert torch.equal(tensor, again[name]), name
    keys = ("train/loss", "val/loss", "val/ppl", "val/bpb")
    histories = [
        {key: metric_steps(d, runs_of(d, "stdlib_gpt")[0].info.run_id, key) for key in keys}
        for d in (tmp_path / "ref", tmp_path / "killed")
    ]
    assert [step for step, _ in histories[0]["train/loss"]] == list(range(24))
    assert [step for step, _ in histories[0]["val/loss"]] == [11, 23]
    assert histories[0] == histories[1]  # every step once, at the same step, with the same value
    assert len(runs_of(tmp_path / "killed", "stdlib_gpt")) == 1


# per-step host reads that stay with two processes: the divergence guard reads each loss on the
# CPU on purpose (free there; on a GPU it reads once per log window); Adam's host step counters
PER_STEP_ON_CPU = {"trainpipe/callbacks/divergence.py"}
HOST_SIDE = ("torch/optim/",)


def test_two_processes_with_batch_b_train_like_one_with_2b(tmp_path: Path) -> None:
    """…and with two processes no step between log windows reads the device: neither the stop
    vote of the preemption handler nor Lightning's per-step SIGTERM broadcast (issue 20, item 1)."""
    common = [
        *TINY_LM,
        "trainer.max_steps=6",
        "trainer.val_check_interval=6",
        "trainer.log_every_n_steps=3",
        "test_after_fit=false",
        "logger=none",
        "run_name=cmp",
    ]
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = run_cli(["train", "trainer=cpu", *common, "data.batch_size=8"], cwd=tmp_path / "one")
    assert one.returncode == 0, one.stderr[-3000:]
    reads = tmp_path / "reads.json"
    counter = "tests.unit.test_lm_training.HostReadCounter"
    two = torchrun(
        # per process: 2 × 4 = the single process's 8
        [
            "train",
            "trainer=ddp_cpu",
            *common,
            "data.batch_size=4",
            f"+callbacks.host_reads._target_={counter}",
            f"+callbacks.host_reads.path={reads}",
        ],
        tmp_path / "two",
        PYTHONPATH=str(REPO),
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    for name, tensor in a.items():
        assert torch.allclose(tensor, b[name], atol=1e-5), name
    for rank in (0, 1):
        steps = json.loads((tmp_path / f"reads.rank{rank}.json").read_text())
        assert sorted(map(int, steps)) == list(range(1, 7))
        for step in ("1", "2", "4", "5"):  # neither a log window (3, 6) nor validation (6)
            sites = [s for s in steps[step] if not s.startswith(HOST_SIDE)]
            assert set(sites) <= PER_STEP_ON_CPU, f"rank {rank} step {step} read at {sites}"
            assert len(sites) <= 1, f"rank {rank} step {step}: {sites}"


def test_predict_continues_a_file_of_prompts_as_the_served_model_does(
    trained: Path, tmp_path: Path
) -> None:
    """`trainpipe predict` on a text file of prompts, and a real `mlflow models serve` of the same
    version answering the same prompts with the same params: the same continuations."""
    import shutil

    from tests.integration.model_server import ModelServer

    # a copy of the store: the runs the tests above count stay as they are
    shutil.copyfile(trained / "mlflow.db", tmp_path / "mlflow.db")
    prompts = ["def main(", "import os", "class Point:"]
    (tmp_path / "prompts.txt").write_text("".join(f"{p}\n" for p in prompts))  # one per line
    sampling = {"max_new_tokens": 12, "temperature": 0.8, "seed": 3}
    command = ["predict", "model_uri=models:/stdlib_gpt/1", "data.path=prompts.txt"]
    command += ["output=continued.jsonl", "keep=[prompt]", "chunk_rows=2", "logger=none"]
    result = run_cli([*command, *(f"{k}={v}" for k, v in sampling.items())], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "continued.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == prompts
    assert all(isinstance(r["continuation"], str) and r["continuation"] for r in rows)
    with ModelServer("models:/stdlib_gpt/1", tmp_path) as server:
        split = {"columns": ["prompt"], "data": [[p] for p in prompts]}
        served = server.invoke({"dataframe_split": split, "params": sampling})
        listed = server.invoke({"inputs": prompts, "params": sampling})
    assert [r["continuation"] for r in served] == [r["continuation"] for r in rows]
    assert [r["continuation"] for r in listed] == [r["continuation"] for r in rows]
    # a prompt column that is not text: one line naming it, nothing written
    (tmp_path / "numbers.jsonl").write_text('{"prompt": 3}\n{"prompt": 4}\n')
    bad = run_cli(
        ["predict", "model_uri=models:/stdlib_gpt/1", "data.path=numbers.jsonl", "output=x.jsonl"],
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "column 'prompt' must hold text, got 3" in bad.stderr
    assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / ".x.jsonl.partial").exists()
