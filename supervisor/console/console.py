"""The console of ``dsup run``: state changes and output for the operator, never in a pipe's way.

``deliver`` only appends to a bounded buffer and one writer task hands batches to a thread, so
a slow or paused terminal costs "[N lines dropped]", never a stalled pipe.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Literal

import anyio

from supervisor.console.view import Batch, Dropped, Item, Lines, LiveView, PlainView, isatty
from supervisor.events import OutputLines, ProgressReported, StateChanged
from supervisor.output.framing import LineBlock

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TextIO

    from anyio.abc import TaskStatus

    from supervisor.events import Event
    from supervisor.process.status import ProcessStatus

logger = logging.getLogger(__name__)

ConsoleMode = Literal["all", "quiet", "output"]

PLAIN_MAX_LINES = 100_000
"""Output lines buffered for a plain or JSON stream before lines are dropped."""
MAX_PENDING_CHARS = 4 * 1024 * 1024
"""Characters of output buffered, in either view (long lines count by their size)."""
LIVE_MAX_LINES = 1_000
"""Output lines taken per refresh in live mode (only the last few are shown)."""
FAIR_LINES = 50
"""Lines every process may hand over per batch even when the shared budget is spent,
so one flooding worker never hides another one's few lines (a crash traceback)."""
SHARE_CHARS = MAX_PENDING_CHARS * 3 // 4
"""Characters one process may take per batch: the rest is kept for the others."""
MAX_PENDING_STATES = 10_000
"""State changes buffered; beyond this they are counted and reported, not kept."""
REFRESH_SECONDS = 0.25
"""Live view: time between redraws while events come in."""
IDLE_REFRESH_SECONDS = 1.0
"""Live view: time between redraws when nothing happens (uptimes still move)."""
FINAL_FLUSH_SECONDS = 2.0


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
        json_logs: one JSON object per state change, output line, drop count or
            dsup log record (written to stderr otherwise).
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
            live = isatty(stream)
        self._is_live = live and not json_logs
        self._shows_output = mode != "quiet"
        self._shows_states = mode != "output"
        self._status = status
        self._view: PlainView | LiveView = (
            LiveView(stream, node) if self._is_live else PlainView(stream, node, json_logs)
        )
        self._max_lines = LIVE_MAX_LINES if self._is_live else PLAIN_MAX_LINES
        self._log_poll_seconds = REFRESH_SECONDS if json_logs else math.inf
        self._pending: deque[Item] = deque()
        self._pending_lines = 0
        self._pending_chars = 0
        self._pending_states = 0
        self._taken: dict[str, tuple[int, int]] = {}  # lines, chars per process this batch
        self._missed: dict[str, int] = {}
        self._missed_states = 0
        self._wake: anyio.Event | None = None

    # -- producers (event loop, never block) ----------------------------------

    def capacity(self) -> int:
        """How many lines one process may hand over now: 0 when full, -1 when not shown.

        -1 tells the pump that no lines nor drop counts are wanted at all, so
        ``--quiet`` costs no line splitting (see ``pump.LineConsumer``). Once
        the shared budget is spent, this is still ``FAIR_LINES``: whether a
        process gets them is decided per process in ``deliver``.
        """
        if not self._shows_output:
            return -1
        if self._pending_chars >= MAX_PENDING_CHARS:
            return 0
        return max(FAIR_LINES, self._max_lines - self._pending_lines)

    def deliver(self, event: Event) -> None:
        """Take one event without blocking; output beyond its process's share is counted."""
        if isinstance(event, OutputLines):
            if not self._shows_output:
                return
            self._take_lines(event)
        elif not self._shows_states or (self._is_live and isinstance(event, ProgressReported)):
            return  # the live table shows progress itself
        elif self._pending_states >= MAX_PENDING_STATES:
            self._missed_states += 1
        else:
            at = event.at if isinstance(event, StateChanged) else time.time()
            self._pending.append((at, event))
            self._pending_states += 1
        if self._wake is not None:
            self._wake.set()

    def _take_lines(self, event: OutputLines) -> None:
        """Take what fits the process's share; the rest is counted for a drop note.

        A process may take lines while the shared budget lasts, and up to
        ``FAIR_LINES`` per batch whatever the others took; its characters are
        capped at ``SHARE_CHARS`` so that long lines cannot fill the buffer alone.
        """
        process = event.process
        missed = self._missed.pop(process, 0) + event.dropped
        # The live view keeps recent lines one by one: a block is split once, here.
        lines = tuple(event.lines) if self._is_live else event.lines
        taken_lines, taken_chars = self._taken.get(process, (0, 0))
        room = max(FAIR_LINES - taken_lines, self._max_lines - self._pending_lines)
        budget = min(MAX_PENDING_CHARS - self._pending_chars, SHARE_CHARS - taken_chars)
        taken, chars = _fit(lines, room - (1 if missed else 0), budget)
        n = len(taken)
        if n == 0:
            if missed + len(lines):
                self._missed[process] = missed + len(lines)
            return
        now = time.time()
        if missed:
            self._pending.append((now, Dropped(process, missed)))
            self._pending_lines += 1
        self._pending.append((now, Lines(process, event.stream, taken)))
        self._pending_lines += n
        self._pending_chars += chars
        self._taken[process] = (taken_lines + n, taken_chars + chars)
        if n < len(lines):
            self._missed[process] = len(lines) - n

    def _drain(self) -> list[Item]:
        """Take everything pending, plus a drop count for whatever was lost."""
        items = list(self._pending)
        self._pending.clear()
        self._pending_lines = self._pending_chars = self._pending_states = 0
        self._taken.clear()
        now = time.time()
        items.extend((now, Dropped(p, n)) for p, n in self._missed.items())
        self._missed.clear()
        if self._missed_states:
            items.append((now, Dropped("", self._missed_states)))
            self._missed_states = 0
        return items

    # -- the writer task -------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Write what is delivered until cancelled.

        When cancelled, writes what is still pending (and, in live mode, a
        final table) within ``FINAL_FLUSH_SECONDS``, shielded, then returns.
        A write stuck on a paused terminal is abandoned, never waited for.
        """
        wake = self._wake = anyio.Event()
        task_status.started()
        with self._view.capturing_logs():
            await self._serve(wake)

    async def _serve(self, wake: anyio.Event) -> None:
        limiter = anyio.CapacityLimiter(1)
        batch = Batch([])
        try:
            while True:
                batch = Batch(self._drain())
                show = partial(self._view.show, batch, self._snapshot(), final=False, timeout=-1)
                await anyio.to_thread.run_sync(show, abandon_on_cancel=True, limiter=limiter)
                if self._is_live:
                    await self._next_redraw(shown_at=anyio.current_time())
                else:
                    # Log records (JSON) are captured in any thread: looked for every refresh.
                    with anyio.move_on_after(self._log_poll_seconds):
                        await wake.wait()
                    wake = self._wake = anyio.Event()
        finally:
            # A batch the cancelled thread never took is written now, with the rest.
            last = Batch(batch.claim() + self._drain())
            show = partial(
                self._view.show, last, self._snapshot(), final=True, timeout=FINAL_FLUSH_SECONDS
            )
            with anyio.move_on_after(FINAL_FLUSH_SECONDS, shield=True):
                await anyio.to_thread.run_sync(show, abandon_on_cancel=True)

    async def _next_redraw(self, *, shown_at: float) -> None:
        """Wait ``REFRESH_SECONDS`` while events come in, up to a second when idle.

        An idle fleet only changes its uptimes, so it is redrawn once a second:
        500 rows of status cost little then.
        """
        await anyio.sleep(REFRESH_SECONDS)
        while not (self._pending or self._missed or self._missed_states):
            if anyio.current_time() >= shown_at + IDLE_REFRESH_SECONDS:
                return
            await anyio.sleep(REFRESH_SECONDS)

    def _snapshot(self) -> tuple[ProcessStatus, ...]:
        if self._status is None or not self._is_live:
            return ()
        try:
            return tuple(self._status())
        except Exception:
            # A bug in the status source must not take the supervisor down with it.
            logger.exception("console: the status callable failed")
            return ()


def _fit(lines: Sequence[str], room: int, budget: int) -> tuple[Sequence[str], int]:
    """The leading ``lines`` that fit in ``room`` lines and ``budget`` chars, and their chars.

    The line that crosses the char budget is still taken when the budget is
    not spent yet, so a process with budget left always gets at least one line;
    lines are bounded by the pump's ``max_line_bytes``, so the overshoot is too.
    """
    n = max(0, min(len(lines), room))
    if isinstance(lines, LineBlock) and n == len(lines):
        # No string per line: the block's size is known, and so is where it is cut.
        if lines.chars <= budget:
            return lines, lines.chars
        if budget <= 0:
            return (), 0
        taken = lines.head(budget)
        return taken, taken.chars
    chars = sum(map(len, lines[:n]))
    if chars <= budget:
        return lines[:n], chars
    chars = 0
    for i, line in enumerate(lines[:n]):
        if chars >= budget:
            return lines[:i], chars
        chars += len(line)
    return lines[:n], chars
