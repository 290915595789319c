"""The code's shape, checked over its source (docs/architecture.md, Layers): the core never asks
which task it holds or sniffs a task's keys."""

from __future__ import annotations

import ast
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


# docs/architecture.md, Layers: a module imports only from its own layer or the ones below.
# Keyed by the first part of the module's name under trainpipe ("" is the package itself).
LAYERS = (
    {"cli", "__main__"},
    {"train", "evaluate", "commands", "registry", "pipeline", "predict"},  # the stages
    {
        "plan",
        "run_log",
        "fit_result",
        "registration",
        "data_change",
        "reports",
        "assemble",
        "loading",
    },
    {"tasks", "tracking", "runtime", "data", "callbacks", "perf", "packaging", "optim", "console"},
    {"config", "errors", ""},
)
# within the layer of parts: what each must not import, so each can be understood alone
NOT_WITHIN_LAYER = {
    "runtime": {
        "callbacks",
        "tracking",
        "tasks",
        "data",
        "perf",
    },  # it defines the Tracker protocol
    "tracking": {"tasks", "data", "callbacks"},  # a model reaches it as a package (packaging.py)
    "data": {"tasks", "tracking", "callbacks"},
    "packaging": {"tasks", "tracking", "data", "callbacks"},
}


def module_imports() -> dict[str, set[str]]:
    """trainpipe module → the trainpipe modules it imports, at any depth of its code (a function's
    lazy import counts: it runs too) except `if TYPE_CHECKING:` blocks."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("trainpipe", *path.relative_to(PACKAGE).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
            for inner in ast.walk(node)
        }
        imported = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                for alias in node.names:  # `from pkg import module` imports the module
                    full = f"{base}.{alias.name}"
                    imported.add(full if full in modules else base)
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def area(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def layer(module: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if area(module) in names)


def test_every_module_has_a_layer() -> None:
    assert [m for m in module_imports() if not any(area(m) in names for names in LAYERS)] == []


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{module} → {target}"
        for module, targets in sorted(module_imports().items())
        for target in sorted(targets)
        if layer(target) < layer(module)
        or area(target) in NOT_WITHIN_LAYER.get(area(module), set())
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    graph = module_imports()
    cycles, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(graph[module]):
            if target in path:
                cycles.append(" → ".join([*path[path.index(target) :], target]))
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert cycles == []
