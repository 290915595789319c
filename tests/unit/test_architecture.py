"""The code's shape, checked over its source (docs/architecture.md, Layers): the core never asks
which task it holds or sniffs a task's keys."""

from __future__ import annotations

import re
from pathlib import Path

import trainpipe

PACKAGE = Path(trainpipe.__file__).parent
TASK_NAMES = "lm|classification|regression"
# keys of a task's model config or data spec: only the task reads them
TASK_KEYS = (
    "n_layer|n_head|d_model|seq_len|init_from|grad_clip|net|gpt|"
    "feature_names|class_values|target_name|vocab_size|tokenizer_files"
)
SNIFFING = re.compile(
    rf'(==|!=)\s*"({TASK_NAMES})"|"({TASK_NAMES})"\s*(==|!=)'  # task == "lm"
    rf'|"({TASK_KEYS})"\s+(not\s+)?in\b|\.get\("({TASK_KEYS})"|\["({TASK_KEYS})"\]'  # "n_layer" in model
    r'|\.endswith\("\.?(CNN|MLP|GPT|MLflowTracker|NullTracker)"\)'  # a class told by its name
    r'|\.replace\("val/'  # val/ → test/ is tasks/base.py: test_metric
)
# the data layer reads its own config keys (data.seq_len, tokenizer.vocab_size)
OWNERS = ("tasks", "data")


def test_no_task_names_or_task_keys_are_tested_outside_the_tasks() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in OWNERS
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if SNIFFING.search(line)
    ]
    assert found == []
