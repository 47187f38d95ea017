"""Stdlib-only helpers for workers supervised by dsup: progress, logs, results, questions.

``from worker_sdk import progress, log, result, ask``, and ``tasks`` for the workers of
a ``tasks = "stream"`` program; outside dsup each call degrades to lines on stderr.
The wire format is in ``protocol`` and docs/worker_protocol.md.
"""

from worker_sdk.api import NoAnswer, ask, log, progress, result
from worker_sdk.tasks import Task, tasks

__all__ = ["NoAnswer", "Task", "ask", "log", "progress", "result", "tasks"]
