"""The command surface's results and errors as Discord replies: text that fits, or files.

An answer over 2,000 characters is never cut: the reply sums it up and attaches the whole
text. Process output is made safe and kept inside code blocks it cannot close.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor import humanize, signals
from supervisor.commands.reports import (
    MAX_TAIL_LINES,
    ActionReport,
    DiscordSyncReport,
    ShutdownReport,
    StatusReport,
    TailReport,
)
from supervisor.errors import AccessDenied, ConfigError, SupervisorError
from supervisor.process.fleet import ReloadResult

if TYPE_CHECKING:
    from collections.abc import Sequence

    from supervisor.commands.reports import ProcessInfo

MESSAGE_LIMIT = 2000
"""Characters in one Discord message's content."""

_FENCE = "```"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a reply."""

    name: str
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """One answer: its text and the files that carry what the text could not hold.

    Attributes:
        content: at most MESSAGE_LIMIT characters.
        files: attachments (the whole answer when it does not fit the text).
        ephemeral: shown only to the member who asked.
    """

    content: str
    files: tuple[Attachment, ...] = ()
    ephemeral: bool = False


def render(result: object, *, title: str) -> Reply:
    """The reply to a command that returned ``result``; ``title`` names the command asked."""
    if isinstance(result, ActionReport):
        return _action(result, title)
    if isinstance(result, StatusReport):
        return _status(result, title)
    if isinstance(result, TailReport):
        return _tail(result, title)
    if isinstance(result, ReloadResult):
        return _reload(result, title)
    if isinstance(result, ShutdownReport):
        return Reply(content=f"{title}: node {result.node} is stopping every process and exiting")
    if isinstance(result, DiscordSyncReport):
        names = ", ".join(f"/{n}" for n in result.commands)
        return Reply(content=f"{title}: registered {names or 'no commands'}")
    return Reply(content=f"{title}: done")


def refusal(exc: AccessDenied) -> Reply:
    """The short, polite, private answer to a command the member may not run."""
    have = (
        "no access here: ask an admin of dsup to list your role in [discord.access]"
        if exc.level == "NONE"
        else f"you have {exc.level.lower()} access"
    )
    return Reply(
        content=f"Sorry, {exc.command} needs {exc.required.lower()} access; {have}.",
        ephemeral=True,
    )


def failure(exc: BaseException, *, title: str) -> Reply:
    """The answer to a command that raised ``exc``: what went wrong, never a traceback.

    The surface's own errors say what is wrong and how to fix it; anything else is
    an internal error, told without its text (the log has it).
    """
    if isinstance(exc, AccessDenied):
        return refusal(exc)
    if isinstance(exc, ConfigError):
        lines = [str(issue) for issue in exc.issues]
        return fitted(f"{title} refused: {exc.path} is not valid", lines, f"{title}-errors")
    if isinstance(exc, SupervisorError):
        return fitted(f"{title} failed", str(exc).splitlines(), f"{title}-error")
    return Reply(content=f"{title} failed: an internal error (dsup's log has the details)")


def fitted(head: str, lines: Sequence[str], stem: str, *, summary: str = "") -> Reply:
    """``head`` and ``lines`` in a code block, or ``head``, ``summary`` and a file of them.

    Args:
        head: the first line, always shown.
        lines: the body; made printable and fenced so it cannot close its block.
        stem: the attached file's name, without ``.txt`` (made safe for a file name).
        summary: what the attachment holds, said when the lines do not fit.
    """
    safe = [_fenced_safe(line) for line in lines]
    text = f"{head}\n{_FENCE}\n" + "\n".join(safe) + f"\n{_FENCE}" if safe else head
    if len(text) <= MESSAGE_LIMIT:
        return Reply(content=text)
    name = f"{file_stem(stem)}.txt"
    said = f"{summary}; " if summary else ""
    content = _cut(f"{head}\n{said}the whole answer is attached ({name})")
    data = ("\n".join(humanize.printable(line) for line in lines) + "\n").encode()
    return Reply(content=content, files=(Attachment(name, data),))


def file_stem(text: str) -> str:
    """``text`` made safe as a file name (a glob target has ``*`` and ``:``)."""
    return _UNSAFE_NAME.sub("_", text).strip("_")[:60] or "dsup"


def _fenced_safe(line: str) -> str:
    # A zero-width space between backticks keeps a worker's ``` from closing the block.
    return humanize.printable(line).replace(_FENCE, "`\u200b`\u200b`")


def _cut(text: str) -> str:
    """A head too long for a message (only a pathological one): cut, and said so."""
    if len(text) <= MESSAGE_LIMIT:
        return text
    return text[: MESSAGE_LIMIT - 20] + "... (cut)"


def _counted(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {word}" for word, n in counts.items())


def _action(report: ActionReport, title: str) -> Reply:
    lines = [
        humanize.outcome(p.process, p.outcome, p.state.value, p.pid, p.message)
        for p in report.processes
    ]
    counts = _counted(Counter(p.outcome for p in report.processes))
    head = f"{title}: {humanize.plural(len(lines), 'process')}, {counts}"
    return fitted(head, lines, f"{report.command.value}-{report.target}")


_HEAD = ("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT", "MEMORY", "CPU")


def _status(report: StatusReport, title: str) -> Reply:
    rows = [_HEAD, *(_status_row(p, report.at) for p in report.processes)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEAD))]
    lines = []
    for row, info in zip(rows, [None, *report.processes], strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        why = _why(info) if info is not None else ""
        if why:
            lines.append(f"    {why}")
    states = _counted(Counter(p.status.state.value for p in report.processes))
    head = f"{title}: node {report.node}, {states or 'no processes'}"
    return fitted(head, lines, "status")


def _status_row(info: ProcessInfo, at: float) -> tuple[str, ...]:
    st = info.status
    up = st.state.is_alive and st.started_at is not None
    if st.last_exit_signal is not None:
        last = signals.name(st.last_exit_signal)
    else:
        last = "-" if st.last_exit_code is None else f"exit {st.last_exit_code}"
    return (
        st.process,
        st.state.value,
        "-" if st.pid is None else str(st.pid),
        humanize.duration(at - st.started_at) if up and st.started_at is not None else "-",
        str(st.restarts),
        last,
        humanize.memory(info.rss_bytes),
        humanize.cpu(info.cpu_percent),
    )


def _why(info: ProcessInfo) -> str:
    st = info.status
    if st.state.value == "RUNNING":
        return ""
    return st.last_error or st.reason


def _tail(report: TailReport, title: str) -> Reply:
    many = len(report.logs) > 1
    lines: list[str] = []
    capped = False
    for log in report.logs:
        prefix = f"{log.process} | " if many else ""
        capped = capped or log.capped
        lines.extend(f"{prefix}{line}" for line in log.lines)
    notes = f" (at most {MAX_TAIL_LINES} a process: /logs sends the whole file)" if capped else ""
    head = f"{title}: {humanize.plural(len(lines), 'line')}{notes}"
    if not lines:
        return Reply(content=f"{title}: no output yet")
    target = "-".join(log.process for log in report.logs[:3])
    return fitted(head, lines, f"tail-{target}", summary=humanize.plural(len(lines), "line"))


def _reload(result: ReloadResult, title: str) -> Reply:
    lines = [
        f"{key}: {', '.join(names) or '-'}"
        for key, names in (
            ("added", result.added),
            ("removed", result.removed),
            ("changed", result.changed),
            ("updated", result.updated),
            ("unchanged", result.unchanged),
        )
    ]
    return fitted(f"{title}: config applied", lines, "reload")
