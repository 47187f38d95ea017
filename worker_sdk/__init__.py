"""Stdlib-only helpers for workers supervised by dsup: progress, logs, results, questions.

``from worker_sdk import progress, log, result, ask``; outside dsup each call degrades to lines
on stderr. The wire format is in ``protocol`` and docs/worker_protocol.md.
"""

from worker_sdk.api import NoAnswer, ask, log, progress, result

__all__ = ["NoAnswer", "ask", "log", "progress", "result"]
