"""The terminal view of ``dsup run``: plain log lines, JSON lines, or a live table.

This module owns what the operator sees on ``dsup run``'s stdout: one line per
state change and per output line when the stream is not a terminal (or one JSON
object per event with ``--json-logs``), and a live status table with the most
recent output below it when it is. It does not own the log files (``logs``),
the status data (``child.ProcessStatus``, read through a callable) nor who
produces events (``fleet``).

The console never blocks the event loop or a worker's pipe (issue 3, issue 4):
``deliver`` only appends to a bounded buffer, ``capacity`` tells the pump how
many lines still fit, and one writer task (``run``) hands batches to a worker
thread, so a slow or paused terminal costs dropped lines ("[N lines dropped]"),
never a stalled pipe. State changes are not subject to the output budget and are
kept even when output is being dropped; they have their own (large) bound.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Literal

import anyio
from rich import box
from rich.console import Console as RichConsole
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from supervisor.events import OrphansCleaned, OutputLines, ProcessState, StateChanged

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import TextIO

    from anyio.abc import TaskStatus

    from supervisor.child import ProcessStatus
    from supervisor.events import Event, Stream

logger = logging.getLogger(__name__)

ConsoleMode = Literal["all", "quiet", "output"]

PLAIN_MAX_LINES = 10_000
"""Output lines buffered for a plain or JSON stream before lines are dropped."""
PLAIN_MAX_CHARS = 4 * 1024 * 1024
"""Characters buffered for a plain or JSON stream (long lines count by size)."""
LIVE_MAX_LINES = 1_000
"""Output lines taken per refresh in live mode (only the last few are shown)."""
MAX_PENDING_STATES = 10_000
"""State changes buffered; beyond this they are counted and reported, not kept."""
REFRESH_SECONDS = 0.25
FINAL_FLUSH_SECONDS = 2.0
RECENT_LINES = 200

_STATE_STYLE = {
    ProcessState.STOPPED: "dim",
    ProcessState.STARTING: "cyan",
    ProcessState.RUNNING: "green",
    ProcessState.BACKOFF: "yellow",
    ProcessState.STOPPING: "magenta",
    ProcessState.EXITED: "blue",
    ProcessState.FATAL: "bold red",
}
_STREAM_MARK: dict[Stream, str] = {"stdout": "|", "stderr": "!"}


@dataclass(frozen=True, slots=True)
class _Lines:
    """The accepted part of one ``OutputLines`` event."""

    process: str
    stream: Stream
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Dropped:
    """Output lines of one process (or state changes, process "") the console lost."""

    process: str
    count: int


_Item = tuple[float, StateChanged | OrphansCleaned | _Lines | _Dropped]


class Console:
    """The console of ``dsup run``: an event sink, a line consumer and a writer task.

    ``deliver`` and ``capacity`` are called on the event loop by producers and
    never block; ``run`` is the one task that writes. Events delivered before
    ``run`` starts are kept (within the bounds) and written once it does.

    Args:
        stream: where to write (``sys.stdout``).
        mode: ``all``, ``quiet`` (state changes only) or ``output`` (worker
            output only).
        live: live table (True) or plain lines (False); None means live when
            ``stream`` is a terminal. ``json_logs`` wins over live.
        json_logs: one JSON object per state change, output line or drop count.
        status: returns the status of every process, for the live table.
        node: the node name, shown in the table title and JSON objects.
    """

    def __init__(
        self,
        *,
        stream: TextIO,
        mode: ConsoleMode = "all",
        live: bool | None = None,
        json_logs: bool = False,
        status: Callable[[], Sequence[ProcessStatus]] | None = None,
        node: str = "",
    ) -> None:
        if live is None:
            live = _isatty(stream)
        self._is_live = live and not json_logs
        self._shows_output = mode != "quiet"
        self._shows_states = mode != "output"
        self._status = status
        self._view: _PlainView | _LiveView = (
            _LiveView(stream, node) if self._is_live else _PlainView(stream, node, json_logs)
        )
        self._max_lines = LIVE_MAX_LINES if self._is_live else PLAIN_MAX_LINES
        self._pending: deque[_Item] = deque()
        self._pending_lines = 0
        self._pending_chars = 0
        self._pending_states = 0
        self._missed: dict[str, int] = {}
        self._missed_states = 0
        self._wake: anyio.Event | None = None

    # -- producers (event loop, never block) ----------------------------------

    def capacity(self) -> int:
        """How many more output lines fit now (0 when full or output is not shown)."""
        if not self._shows_output or self._pending_chars >= PLAIN_MAX_CHARS:
            return 0
        return max(0, self._max_lines - self._pending_lines)

    def deliver(self, event: Event) -> None:
        """Take one event without blocking; output beyond ``capacity`` is counted."""
        if isinstance(event, OutputLines):
            if not self._shows_output:
                return
            self._take_lines(event)
        elif not self._shows_states:
            return
        elif self._pending_states >= MAX_PENDING_STATES:
            self._missed_states += 1
        else:
            at = event.at if isinstance(event, StateChanged) else time.time()
            self._pending.append((at, event))
            self._pending_states += 1
        if self._wake is not None:
            self._wake.set()

    def _take_lines(self, event: OutputLines) -> None:
        missed = self._missed.pop(event.process, 0) + event.dropped
        lines = event.lines
        n, chars = self._fit(lines, self.capacity() - (1 if missed else 0))
        if n == 0:
            if missed + len(lines):
                self._missed[event.process] = missed + len(lines)
            return
        now = time.time()
        if missed:
            self._pending.append((now, _Dropped(event.process, missed)))
            self._pending_lines += 1
        self._pending.append((now, _Lines(event.process, event.stream, lines[:n])))
        self._pending_lines += n
        self._pending_chars += chars
        if n < len(lines):
            self._missed[event.process] = len(lines) - n

    def _fit(self, lines: tuple[str, ...], room: int) -> tuple[int, int]:
        """How many leading ``lines`` fit in ``room`` lines and the char budget.

        The line that crosses the char budget is still taken, so ``capacity()``
        > 0 always means at least one line fits; lines are bounded by the pump's
        ``max_line_bytes``, so the overshoot is too.
        """
        n = max(0, min(len(lines), room))
        budget = PLAIN_MAX_CHARS - self._pending_chars
        chars = sum(map(len, lines[:n]))
        if chars <= budget:
            return n, chars
        chars = 0
        for i, line in enumerate(lines[:n]):
            if chars >= budget:
                return i, chars
            chars += len(line)
        return n, chars

    def _drain(self) -> list[_Item]:
        """Take everything pending, plus a drop count for whatever was lost."""
        items = list(self._pending)
        self._pending.clear()
        self._pending_lines = self._pending_chars = self._pending_states = 0
        now = time.time()
        items.extend((now, _Dropped(p, n)) for p, n in self._missed.items())
        self._missed.clear()
        if self._missed_states:
            items.append((now, _Dropped("", self._missed_states)))
            self._missed_states = 0
        return items

    # -- the writer task -------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Write what is delivered until cancelled.

        When cancelled, writes what is still pending (and, in live mode, a
        final table) within ``FINAL_FLUSH_SECONDS``, shielded, then returns.
        A write stuck on a paused terminal is abandoned, never waited for.
        """
        self._wake = anyio.Event()
        limiter = anyio.CapacityLimiter(1)
        batch = _Batch([])
        task_status.started()
        try:
            while True:
                if not self._is_live:
                    await self._wake.wait()
                    self._wake = anyio.Event()
                batch = _Batch(self._drain())
                show = partial(self._view.show, batch, self._snapshot(), final=False, timeout=-1)
                await anyio.to_thread.run_sync(show, abandon_on_cancel=True, limiter=limiter)
                if self._is_live:
                    await anyio.sleep(REFRESH_SECONDS)
        finally:
            # A batch the cancelled thread never took is written now, with the rest.
            last = _Batch(batch.claim() + self._drain())
            show = partial(
                self._view.show, last, self._snapshot(), final=True, timeout=FINAL_FLUSH_SECONDS
            )
            with anyio.move_on_after(FINAL_FLUSH_SECONDS, shield=True):
                await anyio.to_thread.run_sync(show, abandon_on_cancel=True)

    def _snapshot(self) -> tuple[ProcessStatus, ...]:
        if self._status is None or not self._is_live:
            return ()
        try:
            return tuple(self._status())
        except Exception:
            # A bug in the status source must not take the supervisor down with it.
            logger.exception("console: the status callable failed")
            return ()


class _Batch:
    """Items handed to a worker thread; taken exactly once, by it or by the final flush."""

    def __init__(self, items: list[_Item]) -> None:
        self._items = items
        self._lock = threading.Lock()

    def claim(self) -> list[_Item]:
        with self._lock:
            items, self._items = self._items, []
        return items


class _View:
    """Writes batches to the stream from worker threads, one call at a time."""

    def __init__(self, stream: TextIO, node: str) -> None:
        self._stream = stream
        self._node = node
        self._lock = threading.Lock()
        self._is_broken = False

    def show(
        self, batch: _Batch, rows: Sequence[ProcessStatus], *, final: bool, timeout: float
    ) -> None:
        """Show a batch (and the status rows); give up if another call holds on too long."""
        if not self._lock.acquire(timeout=timeout):
            return
        try:
            items = batch.claim()
            if not self._is_broken:
                self._emit(items, rows, final=final)
        except OSError as exc:
            # The reader went away (EPIPE, a closed terminal): supervision goes on.
            self._is_broken = True
            logger.warning("console: cannot write to the terminal any more: %s", exc)
        finally:
            self._lock.release()

    def _emit(self, items: list[_Item], rows: Sequence[ProcessStatus], *, final: bool) -> None:
        raise NotImplementedError


class _PlainView(_View):
    """Log lines, or JSON lines, written in batches."""

    def __init__(self, stream: TextIO, node: str, json_logs: bool) -> None:
        super().__init__(stream, node)
        self._format = self._json if json_logs else _plain

    def _emit(self, items: list[_Item], rows: Sequence[ProcessStatus], *, final: bool) -> None:
        if items:
            self._stream.write("".join(self._format(at, item) for at, item in items))
            self._stream.flush()

    def _json(self, at: float, item: StateChanged | OrphansCleaned | _Lines | _Dropped) -> str:
        time_ = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
        base = {"time": time_, "node": self._node}
        objs: Iterable[dict[str, object]]
        match item:
            case StateChanged():
                objs = [{"type": "state", "process": item.process, **_state_fields(item)}]
            case OrphansCleaned():
                objs = [{"type": "orphans_cleaned", "pids": item.pids, "reason": item.reason}]
            case _Lines():
                p, s = item.process, item.stream
                objs = (
                    {"type": "output", "process": p, "stream": s, "line": x} for x in item.lines
                )
            case _Dropped():
                kind = "lines" if item.process else "state_changes"
                objs = [{"type": "dropped", "process": item.process, kind: item.count}]
        return "".join(json.dumps({**base, **o}, ensure_ascii=False) + "\n" for o in objs)


def _state_fields(event: StateChanged) -> dict[str, object]:
    return {
        "program": event.program,
        "old": event.old.value,
        "new": event.new.value,
        "pid": event.pid,
        "run_id": event.run_id,
        "exit_code": event.exit_code,
        "exit_signal": _signal_name(event.exit_signal) if event.exit_signal else None,
        "reason": event.reason,
    }


def _plain(at: float, item: StateChanged | OrphansCleaned | _Lines | _Dropped) -> str:
    match item:
        case _Lines():
            head = f"{item.process} {_STREAM_MARK[item.stream]} "
            return "".join(f"{head}{line}\n" for line in item.lines)
        case _Dropped() if item.process:
            return f"{item.process} [{item.count} lines dropped]\n"
        case _:
            return f"{_clock(at)} {_describe(item)}\n"


def _describe(item: StateChanged | OrphansCleaned | _Dropped) -> str:
    """A state change, orphan cleanup or lost state changes, in words (no time)."""
    match item:
        case StateChanged():
            text = f"{item.process} {item.old.value} -> {item.new.value}"
            if item.pid is not None:
                text += f" pid {item.pid}"
            if item.exit_code is not None:
                text += f" exit {item.exit_code}"
            if item.exit_signal:
                text += f" signal {_signal_name(item.exit_signal)}"
            return text + (f" ({item.reason})" if item.reason else "")
        case OrphansCleaned():
            pids = ", ".join(map(str, item.pids[:20])) + (", ..." if len(item.pids) > 20 else "")
            return f"dsup cleaned {len(item.pids)} orphan processes ({item.reason}): pids {pids}"
        case _Dropped():
            return f"dsup [{item.count} state changes dropped]"


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class _LiveView(_View):
    """A rich live table of every process with recent output below it.

    Rendering happens in a worker thread, one call at a time; the ring of recent
    lines keeps raw strings and styles only the lines that fit on screen.
    """

    def __init__(self, stream: TextIO, node: str) -> None:
        super().__init__(stream, node)
        self._console = RichConsole(file=stream, force_terminal=True)
        self._live = Live(
            console=self._console,
            auto_refresh=False,  # we refresh from our own task, no rich thread
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._recent: deque[tuple[str, str, str]] = deque(maxlen=RECENT_LINES)

    def _emit(self, items: list[_Item], rows: Sequence[ProcessStatus], *, final: bool) -> None:
        self._remember(items)
        with contextlib.suppress(OSError):  # not a terminal after all: keep rich's guess
            self._console.size = os.get_terminal_size(self._stream.fileno())
        if not self._live.is_started:
            self._live.start()
        self._live.update(self._layout(rows), refresh=True)
        if final:
            self._live.stop()

    def _remember(self, items: list[_Item]) -> None:
        for at, item in items:
            if isinstance(item, _Lines):
                mark = _STREAM_MARK[item.stream]
                self._recent.extend(
                    (item.process, mark, line) for line in item.lines[-RECENT_LINES:]
                )
            elif isinstance(item, _Dropped) and item.process:
                self._recent.append((item.process, "#", f"[{item.count} lines dropped]"))
            else:
                self._recent.append((_clock(at), "#", _describe(item)))

    def _layout(self, rows: Sequence[ProcessStatus]) -> Group:
        height = self._console.size.height
        max_rows = max(1, height - 10)
        table = _table(self._node, rows, max_rows, now=time.time())
        room = max(2, height - min(len(rows), max_rows) - 6)
        recent = list(self._recent)[-room:]
        return Group(table, *(_recent_line(*entry) for entry in recent))


def _table(node: str, rows: Sequence[ProcessStatus], max_rows: int, *, now: float) -> Table:
    counts = Counter(r.state.value for r in rows)
    summary = ", ".join(f"{n} {state}" for state, n in counts.most_common())
    title = f"dsup {node}: {len(rows)} processes" + (f" ({summary})" if summary else "")
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", expand=False)
    for name in ("PROCESS", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT"):
        table.add_column(name, no_wrap=True, overflow="ellipsis")
    shown = rows if len(rows) <= max_rows else rows[: max_rows - 1]
    for r in shown:
        is_up = r.state.is_alive and r.started_at is not None
        table.add_row(
            r.process,
            Text(r.state.value, style=_STATE_STYLE[r.state]),
            str(r.pid) if r.pid is not None else "-",
            _duration(now - r.started_at) if is_up and r.started_at is not None else "-",
            str(r.restarts),
            _last_exit(r),
        )
    if len(shown) < len(rows):
        table.add_row(f"... {len(rows) - len(shown)} more", "", "", "", "", "")
    return table


def _last_exit(r: ProcessStatus) -> str:
    if r.last_exit_signal:
        return _signal_name(r.last_exit_signal)
    if r.last_exit_code is not None:
        return f"exit {r.last_exit_code}"
    return r.last_error or "-"


def _recent_line(head: str, mark: str, line: str) -> Text:
    style = "red" if mark == "!" else "dim" if mark == "#" else ""
    text = Text.assemble((head, "cyan"), " ", (mark, style), " ", no_wrap=True, overflow="ellipsis")
    text.append_text(Text.from_ansi(line) if mark != "#" else Text(line, style="bold"))
    return text


def _duration(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False
