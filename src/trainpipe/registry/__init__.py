"""The registry lifecycle on MLflow aliases and tags: challenger → champion through a gate,
rollback, retirement, an audit log (docs/registry.md).

A stage-level package (like evaluate.py): it scores models through their task and keeps its state
in MLflow through `tracking/`. mlflow, torch and the tasks are imported only when a function runs.
"""

from trainpipe.registry.gate import Gate
from trainpipe.registry.lifecycle import Decision, champion, history, promote, retire, rollback
from trainpipe.registry.scoring import Scores, score
from trainpipe.registry.store import RegistryError

__all__ = [
    "Decision",
    "Gate",
    "RegistryError",
    "Scores",
    "champion",
    "history",
    "promote",
    "retire",
    "rollback",
    "score",
]
