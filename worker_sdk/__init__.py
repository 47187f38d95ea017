"""Stdlib-only helpers for workers supervised by dsup: progress, logs, results, questions, tasks.

``from worker_sdk import progress, log, result, ask, tasks, submit``; outside dsup each call
degrades to lines on stderr. The wire format: ``protocol`` and docs/worker_protocol.md.
"""

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
