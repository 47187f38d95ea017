"""The audit channel's wording: compact lines, several per message (no discord).

Commands, refusals, processes gone FATAL and orphans cleaned, one line each; read-only
commands that succeeded are left out, so a script polling ``status`` cannot fill the channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisor.bridge.stream import neutralise
from supervisor.commands.access import AccessLevel, Command
from supervisor.humanize import plural
from supervisor.state.outbox import MAX_CONTENT_CHARS

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from supervisor.events import OrphansCleaned, StateChanged
    from supervisor.state.records import AuditRecord

QUIET_COMMANDS = frozenset(c.value for c in Command if c.required_level is AccessLevel.VIEWER)
"""Commands shown only when they did not succeed: those that only look (status, tasks...)."""
_LINE_CHARS = 300
_ICONS = {"ok": "✅", "refused": "🚫", "failed": "❌"}


def is_shown(row: AuditRecord) -> bool:
    """False for a read-only command that succeeded."""
    return not (row.command in QUIET_COMMANDS and row.outcome == "ok")


def audit_line(row: AuditRecord) -> str:
    """One audit row: when, who (from where), what, outcome, detail."""
    what = neutralise(f"{row.command} {row.target}".strip(), max_chars=120)
    who = neutralise(row.actor, max_chars=80)
    detail = f": {neutralise(row.detail, max_chars=160)}" if row.detail else ""
    icon = _ICONS.get(row.outcome, "•")
    line = f"<t:{int(row.at)}:T> {icon} `{who}` ({row.source}) `{what}` {row.outcome}{detail}"
    return line[:_LINE_CHARS]


def fatal_line(event: StateChanged) -> str:
    """A process gone FATAL."""
    return f"<t:{int(event.at)}:T> ⛔ `{event.process}` FATAL: {event.reason}"[:_LINE_CHARS]


def orphans_line(event: OrphansCleaned, at: float) -> str:
    """Orphans the reaper ended."""
    pids = ", ".join(str(p) for p in event.pids[:20])
    more = f" and {len(event.pids) - 20} more" if len(event.pids) > 20 else ""
    return (
        f"<t:{int(at)}:T> 🧹 ended {plural(len(event.pids), 'orphan process')} "
        f"({event.reason}): pids {pids}{more}"
    )


def pack(lines: Iterable[str], limit: int = MAX_CONTENT_CHARS) -> list[str]:
    """``lines`` joined into as few messages of at most ``limit`` characters as they fit."""
    messages: list[str] = []
    current: list[str] = []
    size = 0
    for line in lines:
        if current and size + len(line) + 1 > limit:
            messages.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        messages.append("\n".join(current))
    return messages


def command_lines(rows: Sequence[AuditRecord]) -> list[str]:
    """The lines of the audit rows worth showing."""
    return [audit_line(row) for row in rows if is_shown(row)]
