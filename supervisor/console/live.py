"""The live view: a rich table of every process with recent output below it, in place.

Apart from ``view.py`` so that a node without a terminal (under systemd, in a container)
never loads it (memory); the console imports it only for a terminal.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from typing import TYPE_CHECKING

from supervisor import humanize
from supervisor.console.view import (
    RECENT_LINES,
    STREAM_MARK,
    Dropped,
    Lines,
    LogCapture,
    Rendered,
    View,
    capturing,
    clock,
    describe,
    isatty,
)
from supervisor.events import (
    ProcessState,
    ProgressReported,
    QuestionAsked,
    QuestionClosed,
    ResultReported,
    StateChanged,
    WorkerLogged,
)
from supervisor.output.framing import decode_lines, last_lines

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import TextIO

    from supervisor.console.layout import Entry
    from supervisor.console.view import Item, Logged, Note
    from supervisor.process.status import ProcessStatus

_SHOWN_CHARS = 1000
"""A recent line is cut to this before styling (wider than any terminal row)."""


class LiveView(View):
    """A rich live table of every process with recent output below it.

    Rendering happens in a worker thread, one call at a time; the ring of recent
    lines keeps raw strings and styles only the lines that fit on screen.
    """

    def __init__(self, stream: TextIO, node: str) -> None:
        # rich is imported here, not with the module: a node with no terminal
        # (under systemd, in a container) never loads it.
        from rich.console import Console as RichConsole
        from rich.live import Live

        super().__init__(stream, node)
        self._console = RichConsole(file=stream, force_terminal=True)
        self._live = Live(
            console=self._console,
            auto_refresh=False,  # we refresh from our own task, no rich thread
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._recent: list[Entry] = []
        self._busy: Counter[str] = Counter()  # lines per process lately, halved per batch
        self._told_gaps = False  # a gap's mark said once where the lines left off are
        self._logs = LogCapture()

    def capturing_logs(self) -> contextlib.AbstractContextManager[object]:
        # A log line written to the same terminal would break the in-place redraw.
        return capturing(self._logs, lambda handler: isatty(handler.stream))

    def _emit(self, items: list[Item], rows: Sequence[ProcessStatus], *, final: bool) -> None:
        from supervisor.console.layout import layout

        self._remember(items, self._logs.claim())
        with contextlib.suppress(OSError):  # not a terminal after all: keep rich's guess
            self._console.size = os.get_terminal_size(self._stream.fileno())
        if not self._live.is_started:
            self._make_room()
            self._live.start()
        size = self._console.size
        view, has_gap = layout(
            self._node, rows, self._recent, size=size, busy=self._busy, explain=not self._told_gaps
        )
        self._told_gaps |= has_gap
        self._live.update(view, refresh=True)
        if final:
            self._live.stop()

    def _make_room(self) -> None:
        """Start the view on the terminal's top row, whatever was printed before.

        Scrolls the screen's lines into the scrollback (nothing is erased) and
        moves to the top, so a view of ``height - 1`` lines fits even when a
        command line (``make demo``'s echo) took the first rows.
        """
        height = self._console.size.height
        if height > 1:
            self._stream.write("\n" * (height - 1) + f"\x1b[{height - 1}A\r\x1b[J")
            self._stream.flush()

    def _remember(self, items: list[Item], logs: list[tuple[float, Logged]]) -> None:
        """Add a batch and the log records captured meanwhile, in time order.

        A log record (``SIGINT: stopping every process``) is often written just
        before the state changes it causes, in the same batch. The recent lines
        are then cut to ``RECENT_LINES``, each process keeping a fair share of
        its output and state changes together (``layout.fair_tail``);
        ``_busy`` says which processes wrote the most lately.
        """
        from supervisor.console.layout import Entry, fair_tail

        self._busy = Counter({p: n // 2 for p, n in self._busy.items() if n > 1})
        timed: list[tuple[float, list[Entry]]] = [
            (at, [Entry("~", clock(at), "~", record.text())]) for at, record in logs
        ]
        for at, item in items:
            if isinstance(item, Lines):
                mark = STREAM_MARK[item.stream]
                tail = decode_lines(item.data[last_lines(item.data, RECENT_LINES) :])
                p = item.process
                self._busy[p] += item.data.count(b"\n")  # bounded: LIVE_MAX_BYTES a refresh
                timed.append((at, [Entry(p, p, mark, line[:_SHOWN_CHARS]) for line in tail]))
            elif isinstance(item, Dropped) and item.process:
                note = f"[{humanize.plural(item.count, 'line')} dropped]"
                self._busy[item.process] += item.count
                timed.append((at, [Entry(item.process, item.process, "#", note, item.count)]))
            elif not isinstance(item, Rendered):  # never: a live view prepares nothing
                # A process's notes share its room; dsup's notes have their own.
                key = _process_of(item) or "#"
                stopping = isinstance(item, StateChanged) and item.new is ProcessState.STOPPING
                timed.append((at, [Entry(key, clock(at), "#", describe(item), stopping=stopping)]))
        timed.sort(key=lambda entry: entry[0])  # stable: a batch keeps its own order
        for _, entries in timed:
            self._recent.extend(entries)
        self._recent = fair_tail(self._recent, RECENT_LINES, self._busy)


def _process_of(item: Note) -> str:
    """The process a note is about ("" for dsup's own)."""
    match item:
        case StateChanged() | ProgressReported() | WorkerLogged():
            return item.process
        case ResultReported():
            return item.result.process
        case QuestionAsked() | QuestionClosed():
            return item.question.process
        case _:
            return ""
