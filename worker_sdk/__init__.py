"""Stdlib-only helpers for workers supervised by dsup: progress, logs, results, questions.

``from worker_sdk import progress, log, result, ask``, ``tasks`` for the workers of
a ``tasks = "stream"`` program and ``submit`` for pipelines; outside dsup each call
degrades to lines on stderr. The wire format is in ``protocol`` and
docs/worker_protocol.md.
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
