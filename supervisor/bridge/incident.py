"""Incidents: one chat message per crashing process, edited while the crash loop lasts.

An unexpected exit or FATAL opens one, further crashes update it, a stretch of RUNNING or an
operator's stop closes it. No discord, no clock and no files: the relay passes ``now``, reads
the crashed run's last lines from its log files, and decides when each message goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from supervisor.bridge.stream import neutralise
from supervisor.events import ProcessState
from supervisor.humanize import duration, plural
from supervisor.process.policy import describe_exit
from supervisor.state.outbox import MAX_CONTENT_CHARS, fit

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from supervisor.commands.tail import LogMarks
    from supervisor.events import StateChanged
    from supervisor.state.incident_posts import OpenIncident

    # What a run wrote: its logs' ends at its start (None: unknown) and at its exit.
    LogSpan = tuple[LogMarks | None, LogMarks]

TAIL_LINES = 15
"""Last lines of output shown in an incident."""
TAIL_CHARS = 1200
"""Characters of those lines at most (the message also holds the summary)."""
LINE_CHARS = 400
"""Characters of one of those lines at most (cut, saying so with an ellipsis)."""
ALSO_CHARS = 400
"""Characters of the line naming the other crashes waiting for their message, at most."""
MIN_RECOVER_SECONDS = 60.0
"""An incident closes after max(start_seconds * 10, this) of RUNNING."""

_DOWN = frozenset({ProcessState.BACKOFF, ProcessState.EXITED, ProcessState.FATAL})


def is_crash(event: StateChanged) -> bool:
    """True when ``event`` is a process ending unexpectedly (or giving up: FATAL).

    An exit 0 is a normal end; so is anything after an operator's stop.
    """
    if event.new is ProcessState.FATAL:
        return True
    if event.new not in _DOWN or event.old is ProcessState.STOPPING:
        return False
    return event.exit_signal is not None or event.exit_code != 0


def recover_seconds(start_seconds: float, minimum: float = MIN_RECOVER_SECONDS) -> float:
    """How long a process must stay RUNNING for its incident to close."""
    return max(start_seconds * 10, minimum)


@dataclass(slots=True, kw_only=True)
class Incident:
    """One open (or just closed) incident of one process.

    Attributes:
        process: ``program:index``.
        opened_at: wall time of the first crash (display).
        crashes: crashes so far.
        last: the latest crash (None: none since an earlier dsup left it open).
        tail: the last lines of output of the latest crash.
        tail_stream: ``stderr`` or ``stdout``, whichever ``tail`` comes from.
        span: where the latest crashed run's lines are in the logs.
        tail_due: ``span`` is not read yet (the message waits for it).
        running_since: monotonic time it entered RUNNING since the last crash.
        due_at: monotonic time it opened (how long it has waited for its message).
        closed: the closing words once closed ("" while open).
        closed_at: wall time of the close.
        row_id: the outbox row of its message, once posted.
        version: bumped at each change; ``posted`` is the version in the outbox.
        preamble: state changes of the log channel that rode in its first
            message, ahead of it (they waited for the same turn); kept on edits.
        is_unsent: its latest row may still wait in the outbox (an edit then
            changes that row instead of queueing another).
        is_told: named in an earlier incident's message while it waited for its own.
        earlier: the text of its message when an earlier dsup left it open.
    """

    process: str
    opened_at: float
    last: StateChanged | None
    crashes: int = 1
    tail: tuple[str, ...] = ()
    tail_stream: str = "stderr"
    span: LogSpan | None = None
    tail_due: bool = False
    running_since: float | None = None
    due_at: float = 0.0
    closed: str = ""
    closed_at: float = 0.0
    row_id: int | None = None
    version: int = 1
    posted: int = field(default=0)
    preamble: str = ""
    is_unsent: bool = False
    is_told: bool = False
    earlier: str = ""


class Incidents:
    """The incidents of a node's processes: at most one open per process.

    Args:
        recover_after: seconds of RUNNING that close the incident of a process.
    """

    def __init__(self, *, recover_after: Callable[[str], float]) -> None:
        self._recover_after = recover_after
        self._open: dict[str, Incident] = {}
        self._closed: list[Incident] = []

    def on_state(self, event: StateChanged, *, now: float, span: LogSpan | None) -> None:
        """Open, update or close the incident of ``event.process``.

        Args:
            event: the state change.
            now: monotonic time (starts the recovery clock on RUNNING).
            span: where the ended run's lines are (used when ``event`` is a
                crash; None: nowhere to read them).
        """
        incident = self._open.get(event.process)
        if is_crash(event):
            if incident is None:
                incident = self._open[event.process] = Incident(
                    process=event.process, opened_at=event.at, last=event, crashes=0, due_at=now
                )
            incident.crashes += 1
            incident.last = event
            incident.span = span
            incident.tail_due = span is not None
            if span is None:
                incident.tail = ()
            incident.running_since = None
            incident.version += 1
        elif incident is None:
            return
        elif event.new is ProcessState.RUNNING:
            incident.running_since = now
        elif event.new in (ProcessState.STOPPING, ProcessState.STOPPED):
            self._close(
                incident, f"stopped ({event.reason})" if event.reason else "stopped", event.at
            )

    def inherit(self, left: OpenIncident, *, now: float, wall: float, is_known: bool) -> None:
        """Take over an incident an earlier dsup left open (it was killed, or crashed).

        A crash of the process seen already continues it (its message is edited);
        otherwise it stays open for a crash to continue it, and closes, saying so,
        after the time that closes an incident without one.

        Args:
            left: what the ledger knows of it.
            now: monotonic time (the recovery clock starts now).
            wall: wall time (the close when ``is_known`` is False).
            is_known: False when the process is no longer configured: closed now.
        """
        incident = self._open.get(left.process)
        if incident is not None:
            if incident.row_id is None:
                incident.row_id = left.row_id
                incident.crashes += left.crashes
                incident.opened_at = min(incident.opened_at, left.opened_at)
            return
        incident = self._open[left.process] = Incident(
            process=left.process,
            opened_at=left.opened_at,
            last=None,
            crashes=left.crashes,
            running_since=now,
            row_id=left.row_id,
            earlier=left.content,
        )
        incident.posted = incident.version
        if not is_known:
            self._close(incident, "closed (dsup was restarted without it)", wall)

    def tick(self, *, now: float, wall: float) -> None:
        """Close the incidents of processes RUNNING long enough since their last crash."""
        for incident in list(self._open.values()):
            since = incident.running_since
            if since is not None and now - since >= self._recover_after(incident.process):
                how = (
                    "recovered" if incident.last else "closed (dsup was restarted; no crash since)"
                )
                self._close(incident, how, wall)

    def changed(self) -> list[Incident]:
        """Incidents whose message must be posted or edited (once their lines are read),
        in the order they opened."""
        changed = [
            i
            for i in (*self._open.values(), *self._closed)
            if i.version != i.posted and not i.tail_due
        ]
        return sorted(changed, key=lambda i: i.opened_at)

    def tails_due(self) -> list[Incident]:
        """Incidents whose latest crashed run's lines are still to be read."""
        return [i for i in (*self._open.values(), *self._closed) if i.tail_due]

    def tail_read(
        self, incident: Incident, span: LogSpan, stream: str, lines: Sequence[str]
    ) -> None:
        """The last ``lines`` of ``stream`` in ``span``, read for ``incident``.

        Ignored when a later crash of the process wants a newer span read.
        """
        if incident.span is span:
            incident.tail = _fit_tail(lines)
            incident.tail_stream = stream
            incident.tail_due = False

    def posted(self, incident: Incident, *, version: int, row_id: int) -> None:
        """``incident`` at ``version`` is in the outbox as row ``row_id``."""
        incident.row_id = row_id
        incident.posted = version
        incident.is_unsent = True
        if incident.closed and incident.version == version:
            self._closed.remove(incident)

    def sent(self) -> None:
        """Every row written so far was sent: the next change of any incident is a new edit."""
        for incident in (*self._open.values(), *self._closed):
            incident.is_unsent = False

    def open_count(self) -> int:
        """Incidents open now."""
        return len(self._open)

    def is_empty(self) -> bool:
        """No incident open nor closed and waiting for its last message."""
        return not self._open and not self._closed

    def _close(self, incident: Incident, how: str, wall: float) -> None:
        del self._open[incident.process]
        incident.closed = how
        incident.closed_at = wall
        incident.version += 1
        self._closed.append(incident)


def render(incident: Incident) -> str:
    """The incident's message: what happened, how often, what now, and its last lines.

    After its preamble, if any; the oldest of the last lines give way when all of it
    would not fit one message.
    """
    last = incident.last
    if incident.closed:
        head = _closed_head(incident)
        if last is None:  # no crash since an earlier dsup left it: its words stay below
            return fit(f"{head}\n{incident.earlier}")
    elif last is None:
        return incident.earlier
    else:
        head = _open_head(incident, last)
    if incident.preamble:
        head = f"{incident.preamble}\n{head}"
    if not incident.tail:
        return f"{head}\n(no output before the crash)"
    intro = f"{head}\nlast lines of {incident.tail_stream}:\n```\n"
    room = MAX_CONTENT_CHARS - len(intro) - len("\n```")
    tail = list(incident.tail)
    while len(tail) > 1 and sum(len(line) + 1 for line in tail) > room:  # bounded: a line each
        tail.pop(0)
    body = "\n".join(tail)
    return f"{intro}{body}\n```"


def _closed_head(incident: Incident) -> str:
    icon = "✅" if incident.closed == "recovered" else "⏹️"
    return (
        f"{icon} `{incident.process}` {incident.closed} after {plural(incident.crashes, 'crash')} "
        f"(<t:{int(incident.opened_at)}:f> to <t:{int(incident.closed_at)}:f>)"
    )


def _open_head(incident: Incident, last: StateChanged) -> str:
    name = f"`{incident.process}`"
    span = duration(last.at - incident.opened_at)
    if last.new is ProcessState.FATAL:
        return (
            f"⛔ {name} is FATAL after {plural(incident.crashes, 'crash')} in {span}: "
            f"{last.reason}\n"
            f"It stays down: start it again with `/start {incident.process}` once fixed."
        )
    if incident.crashes == 1:
        how = describe_exit(last.exit_code, last.exit_signal)
        if last.restarts:  # none on its first run (and never with restart = "never")
            how += f" after {plural(last.restarts, 'restart')}"
        return (
            f"🔴 {name} crashed: {how}, now {last.new.value}: {last.reason} · <t:{int(last.at)}:f>"
        )
    return (
        f"🔴 {name} crashed {incident.crashes} times in {span}, now {last.new.value}: "
        f"{last.reason} · last <t:{int(last.at)}:R>"
    )


def also_crashed(processes: Sequence[str], max_chars: int = ALSO_CHARS) -> str:
    """The line that names crashes whose incidents wait for their own message ("" for none)."""
    if not processes:
        return ""
    head, tail = "⚠️ also crashed: ", " (a message each follows)"
    names: list[str] = []
    room = max_chars - len(head) - len(tail) - len(", and 1,000 more")
    for process in processes:  # bounded: a name each
        name = f"`{process}`"
        if len(name) + 2 > room:
            break
        names.append(name)
        room -= len(name) + 2
    more = len(processes) - len(names)
    if not names:
        listed = plural(more, "process")
    else:
        listed = ", ".join(names) + (f", and {more:,} more" if more else "")
    return f"{head}{listed}{tail}"


def _fit_tail(lines: Sequence[str]) -> tuple[str, ...]:
    """The last lines that fit :data:`TAIL_CHARS`, made safe for a code block."""
    kept: list[str] = []
    room = TAIL_CHARS
    for line in reversed(lines[-TAIL_LINES:]):
        text = neutralise(line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 1] + "…")
        if len(text) + 1 > room:
            break
        kept.append(text)
        room -= len(text) + 1
    return tuple(reversed(kept))
