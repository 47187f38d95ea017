"""Stdlib-only helpers for workers supervised by dsup: progress, logs, results, questions, tasks.

``from worker_sdk import progress, log, result, ask, tasks, submit``; outside dsup each call
degrades to lines on stderr. The wire format: ``protocol`` and docs/worker_protocol.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker_sdk.api import NoAnswer, ask, log, progress, result
    from worker_sdk.tasks import Submitted, Task, TaskResult, submit, tasks

__all__ = [
    "NoAnswer",
    "Submitted",
    "Task",
    "TaskResult",
    "ask",
    "log",
    "progress",
    "result",
    "submit",
    "tasks",
]

# Loaded at first use: dsup imports ``worker_sdk.protocol`` for the wire names, and a
# node must not carry the workers' side (their channel, threads, queues) for it.
_HOME = {"NoAnswer": "api", "ask": "api", "log": "api", "progress": "api", "result": "api"}


def __getattr__(name: str) -> object:
    if name not in __all__:
        raise AttributeError(f"module 'worker_sdk' has no attribute {name!r}")
    module = importlib.import_module(f"worker_sdk.{_HOME.get(name, 'tasks')}")
    value = getattr(module, name)
    globals()[name] = value
    return value
