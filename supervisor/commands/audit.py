"""What an audit row says about a command: its outcome and a short, bounded detail.

One wording for every front end; long targets and details are cut so that a row stays small.
"""

from __future__ import annotations

from typing import Literal

import anyio

from supervisor.commands.reports import ActionReport, DiscordSyncReport, ShutdownReport
from supervisor.humanize import plural
from supervisor.process.fleet import ReloadResult
from supervisor.tasks.records import TaskRecord

Outcome = Literal["ok", "refused", "failed"]

_TARGET_CHARS = 200  # longer targets and details are stored cut, with their length
_DETAIL_CHARS = 1000


def outcome_of(result: object) -> Outcome:
    """``failed`` for an action that failed on some process, else ``ok``."""
    if isinstance(result, ActionReport) and not result.is_ok:
        return "failed"
    return "ok"


def describe(exc: BaseException) -> str:
    """The detail of a command that raised ``exc`` (``cancelled`` when it was)."""
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return "cancelled"
    return f"{type(exc).__name__}: {exc}"


def summarize(result: object, detail: str) -> str:
    """A short audit detail: failures by process, or what a reload changed."""
    parts = [detail] if detail else []
    if isinstance(result, ActionReport):
        bad = [f"{p.process}: {p.message}" for p in result.processes if p.outcome == "failed"]
        count = len(result.processes)
        parts.append(plural(count, "process"))
        parts.extend(bad)
    elif isinstance(result, TaskRecord):
        parts.append(f"task {result.id} {result.state.value}")
    elif isinstance(result, ShutdownReport):
        parts.append(f"node {result.node} shutting down")
    elif isinstance(result, DiscordSyncReport):
        parts.append(f"{plural(len(result.commands), 'command')} in guild {result.guild_id}")
    elif isinstance(result, ReloadResult):
        changes = {
            "added": result.added,
            "removed": result.removed,
            "changed": result.changed,
            "updated": result.updated,
        }
        described = [f"{key} {', '.join(names)}" for key, names in changes.items() if names]
        parts.extend(described or ["nothing changed"])
    return "; ".join(parts)


def clipped(target: str, detail: str) -> tuple[str, str]:
    """``target`` and ``detail`` as the audit stores them, each cut to its limit."""
    return _clip(target, _TARGET_CHARS), _clip(detail, _DETAIL_CHARS)


def _clip(text: str, limit: int) -> str:
    """``text``'s first ``limit`` characters and its length, when it is longer."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
