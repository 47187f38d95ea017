"""How the console's batches look: plain log lines, JSON lines, or a rich live table.

This module owns the formatting of events for the terminal and the live view
(table, recent output, log records captured while it is up). Every method of a
view runs in a worker thread, one call at a time. It does not own buffering,
back-pressure or the writer task (``console``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich import box
from rich.cells import cell_len
from rich.console import Console as RichConsole
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from supervisor import humanize
from supervisor.events import OrphansCleaned, ProcessState, StateChanged

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import TextIO

    from supervisor.child import ProcessStatus
    from supervisor.events import Stream

logger = logging.getLogger(__name__)

RECENT_LINES = 200
"""Lines of recent output (and state changes, log records) the live view keeps."""

_SHOWN_CHARS = 1000
"""A recent line is cut to this before styling (wider than any terminal row)."""

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
class Lines:
    """The accepted part of one ``OutputLines`` event."""

    process: str
    stream: Stream
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Dropped:
    """Output lines of one process (or state changes, process "") the console lost."""

    process: str
    count: int


Item = tuple[float, StateChanged | OrphansCleaned | Lines | Dropped]


class Batch:
    """Items handed to a worker thread; taken exactly once, by it or by the final flush."""

    def __init__(self, items: list[Item]) -> None:
        self._items = items
        self._lock = threading.Lock()

    def claim(self) -> list[Item]:
        """Take the items; every later call gets an empty list."""
        with self._lock:
            items, self._items = self._items, []
        return items


class View:
    """Writes batches to the stream from worker threads, one call at a time."""

    def __init__(self, stream: TextIO, node: str) -> None:
        self._stream = stream
        self._node = node
        self._lock = threading.Lock()
        self._is_broken = False

    def show(
        self, batch: Batch, rows: Sequence[ProcessStatus], *, final: bool, timeout: float
    ) -> None:
        """Show a batch and the status rows; never raises for a broken stream.

        Args:
            batch: the items to show (claimed here, so a batch is shown once).
            rows: the status of every process (live view only).
            final: the last call: the live view leaves its final table behind.
            timeout: seconds to wait for a call still stuck in a write (-1: forever);
                on timeout nothing is shown.
        """
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

    def _emit(self, items: list[Item], rows: Sequence[ProcessStatus], *, final: bool) -> None:
        raise NotImplementedError

    def capturing_logs(self) -> contextlib.AbstractContextManager[object]:
        """While live, log records meant for the terminal go into the view instead."""
        return contextlib.nullcontext()


class PlainView(View):
    """Log lines, or JSON lines, written in batches."""

    def __init__(self, stream: TextIO, node: str, json_logs: bool) -> None:
        super().__init__(stream, node)
        self._format = self._json if json_logs else _plain

    def _emit(self, items: list[Item], rows: Sequence[ProcessStatus], *, final: bool) -> None:
        if items:
            self._stream.write("".join(self._format(at, item) for at, item in items))
            self._stream.flush()

    def _json(self, at: float, item: StateChanged | OrphansCleaned | Lines | Dropped) -> str:
        time_ = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
        obj: dict[str, object] = {"time": time_, "node": self._node}
        match item:
            case StateChanged():
                obj |= {"type": "state", "process": item.process, **_state_fields(item)}
            case OrphansCleaned():
                obj |= {"type": "orphans_cleaned", "pids": item.pids, "reason": item.reason}
            case Lines():
                obj |= {"type": "output", "process": item.process, "stream": item.stream}
                # One object per line; the shared fields are encoded once per batch.
                head = json.dumps(obj, ensure_ascii=False)[:-1] + ', "line": '
                return "".join(f"{head}{json.dumps(x, ensure_ascii=False)}}}\n" for x in item.lines)
            case Dropped():
                kind = "lines" if item.process else "state_changes"
                obj |= {"type": "dropped", "process": item.process, kind: item.count}
        return json.dumps(obj, ensure_ascii=False) + "\n"


def _state_fields(event: StateChanged) -> dict[str, object]:
    return {
        "program": event.program,
        "old": event.old.value,
        "new": event.new.value,
        "pid": event.pid,
        "run_id": event.run_id,
        "exit_code": event.exit_code,
        "exit_signal": humanize.signal_name(event.exit_signal) if event.exit_signal else None,
        "reason": event.reason,
    }


def _plain(at: float, item: StateChanged | OrphansCleaned | Lines | Dropped) -> str:
    match item:
        case Lines():
            head = f"{item.process} {_STREAM_MARK[item.stream]} "
            return "".join(f"{head}{humanize.printable(line)}\n" for line in item.lines)
        case Dropped() if item.process:
            return f"{item.process} [{item.count} lines dropped]\n"
        case _:
            return f"{_clock(at)} {humanize.printable(_describe(item))}\n"


def _describe(item: StateChanged | OrphansCleaned | Dropped) -> str:
    """A state change, orphan cleanup or lost state changes, in words (no time)."""
    match item:
        case StateChanged():
            text = f"{item.process} {item.old.value} -> {item.new.value}"
            if item.pid is not None:
                text += f" pid {item.pid}"
            if item.exit_code is not None:
                text += f" exit {item.exit_code}"
            if item.exit_signal:
                text += f" signal {humanize.signal_name(item.exit_signal)}"
            return text + (f" ({item.reason})" if item.reason else "")
        case OrphansCleaned():
            pids = ", ".join(map(str, item.pids[:20])) + (", ..." if len(item.pids) > 20 else "")
            return f"dsup cleaned {len(item.pids)} orphan processes ({item.reason}): pids {pids}"
        case Dropped():
            return f"dsup [{item.count} state changes dropped]"


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


class LiveView(View):
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
        self._logs = _LogCapture()

    @contextlib.contextmanager
    def capturing_logs(self) -> Iterator[object]:
        # A log line written to the same terminal would break the in-place redraw.
        handlers = [
            h
            for h in logging.getLogger().handlers
            if isinstance(h, logging.StreamHandler) and isatty(h.stream)
        ]
        for handler in handlers:
            handler.addFilter(self._logs)
        try:
            yield self._logs
        finally:
            for handler in handlers:
                handler.removeFilter(self._logs)

    def _emit(self, items: list[Item], rows: Sequence[ProcessStatus], *, final: bool) -> None:
        self._remember(items, self._logs.claim())
        with contextlib.suppress(OSError):  # not a terminal after all: keep rich's guess
            self._console.size = os.get_terminal_size(self._stream.fileno())
        if not self._live.is_started:
            self._live.start()
        self._live.update(self._layout(rows), refresh=True)
        if final:
            self._live.stop()

    def _remember(self, items: list[Item], logs: list[tuple[float, str]]) -> None:
        """Add a batch and the log records captured meanwhile, in time order.

        A log record (``SIGINT: stopping every process``) is often written just
        before the state changes it causes, in the same batch.
        """
        timed: list[tuple[float, list[tuple[str, str, str]]]] = [
            (at, [(_clock(at), "~", text)]) for at, text in logs
        ]
        for at, item in items:
            if isinstance(item, Lines):
                mark = _STREAM_MARK[item.stream]
                tail = item.lines[-RECENT_LINES:]
                timed.append((at, [(item.process, mark, line[:_SHOWN_CHARS]) for line in tail]))
            elif isinstance(item, Dropped) and item.process:
                timed.append((at, [(item.process, "#", f"[{item.count} lines dropped]")]))
            else:
                timed.append((at, [(_clock(at), "#", _describe(item))]))
        timed.sort(key=lambda entry: entry[0])  # stable: a batch keeps its own order
        for _, entries in timed:
            self._recent.extend(entries)

    def _layout(self, rows: Sequence[ProcessStatus]) -> Group:
        width, height = self._console.size
        max_rows = max(1, height - 10)
        table = _table(rows, max_rows, now=time.time(), width=width)
        # Title, table (rows + 4) and recent lines fill height - 1 lines, so the
        # final table and the shell's prompt fit without scrolling the title away.
        room = max(2, height - min(len(rows), max_rows) - 6)
        recent = list(self._recent)[-room:]
        return Group(_title(self._node, rows), table, *(_recent_line(*entry) for entry in recent))


class _LogCapture(logging.Filter):
    """Keeps log records (bounded) instead of letting a terminal handler write them."""

    def __init__(self) -> None:
        super().__init__()
        self._records: deque[tuple[float, str]] = deque(maxlen=RECENT_LINES)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        text = f"{record.levelname} {record.name}: {record.getMessage()}".replace("\n", " ")
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        with self._lock:
            self._records.append((record.created, text))
        return False

    def claim(self) -> list[tuple[float, str]]:
        with self._lock:
            records = list(self._records)
            self._records.clear()
        return records


_COLUMNS = ("PROCESS", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT")
_SHRINK_ORDER = (((5, 0), 7), ((4, 3), 4), ((5, 0), 3))
"""Which columns give up width, in turn, and down to how many cells: LAST EXIT and
PROCESS first, then RESTARTS and UPTIME; STATE and PID only in rich's last even cut."""


def _title(node: str, rows: Sequence[ProcessStatus]) -> Text:
    """One line (never wrapped, so the layout's height is known) counting states."""
    counts = Counter(r.state.value for r in rows)
    summary = ", ".join(f"{n} {state}" for state, n in counts.most_common())
    title = f"dsup {node}: {len(rows)} processes" + (f" ({summary})" if summary else "")
    return Text(title, style="table.title", no_wrap=True, overflow="ellipsis")


def _table(rows: Sequence[ProcessStatus], max_rows: int, *, now: float, width: int) -> Table:
    """The status table, ``max_rows`` rows at most, fitted to ``width`` cells."""
    shown = rows if len(rows) <= max_rows else rows[: max_rows - 1]
    cells = [_cells(r, now) for r in shown]
    if len(shown) < len(rows):
        cells.append((f"... {len(rows) - len(shown)} more", "", "", "", "", ""))
    table = Table(box=box.SIMPLE_HEAD, expand=False)
    for name, most in zip(_COLUMNS, _widths(cells, width), strict=True):
        table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=most)
    for i, row in enumerate(cells):
        style = _STATE_STYLE[shown[i].state] if i < len(shown) else ""
        table.add_row(row[0], Text(row[1], style=style), *row[2:])
    return table


def _cells(r: ProcessStatus, now: float) -> tuple[str, str, str, str, str, str]:
    is_up = r.state.is_alive and r.started_at is not None
    return (
        r.process,
        r.state.value,
        str(r.pid) if r.pid is not None else "-",
        humanize.duration(now - r.started_at) if is_up and r.started_at is not None else "-",
        str(r.restarts),
        _last_exit(r),
    )


def _widths(cells: Sequence[Sequence[str]], width: int) -> list[int]:
    """Column widths that fit ``width``, shrinking columns in ``_SHRINK_ORDER``.

    Within a step the widest column shrinks first. Each column costs 3 cells
    more than its content (padding and divider), plus one for the table's edge.
    """
    widths = [max(map(cell_len, column)) for column in zip(_COLUMNS, *cells, strict=True)]
    excess = sum(widths) + 3 * len(widths) + 1 - width
    for columns, floor in _SHRINK_ORDER:
        while excess > 0:  # bounded: every pass takes one cell off a column above floor
            widest = max(columns, key=lambda i: widths[i])
            if widths[widest] <= floor:
                break
            widths[widest] -= 1
            excess -= 1
    return widths


def _last_exit(r: ProcessStatus) -> str:
    if r.last_exit_signal:
        return humanize.signal_name(r.last_exit_signal)
    if r.last_exit_code is not None:
        return f"exit {r.last_exit_code}"
    return humanize.printable(r.last_error) if r.last_error else "-"


def _recent_line(head: str, mark: str, line: str) -> Text:
    style = {"!": "red", "#": "dim", "~": "yellow"}.get(mark, "")
    text = Text.assemble((head, "cyan"), " ", (mark, style), " ", no_wrap=True, overflow="ellipsis")
    if mark in "#~":
        text.append(humanize.printable(line), style="bold")
    else:  # only SGR is left, which rich turns into styles
        text.append_text(Text.from_ansi(humanize.printable(line, keep_color=True)))
    return text


def isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False
