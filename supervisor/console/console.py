"""The console of ``dsup run``: state changes and output for the operator, never in a pipe's way.

``deliver`` only appends to a bounded buffer and one writer task hands batches to a thread, so
a slow or paused terminal costs "[N lines dropped]", never a stalled pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Literal

import anyio

from supervisor.console.view import (
    Batch,
    Dropped,
    Item,
    Lines,
    LogCapture,
    PlainView,
    isatty,
)
from supervisor.events import OutputChunk, ProgressReported, StateChanged
from supervisor.output.framing import cut_at_line

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TextIO

    from anyio.abc import TaskStatus

    from supervisor.console.live import LiveView
    from supervisor.console.view import Buffer
    from supervisor.events import Event
    from supervisor.process.status import ProcessStatus

logger = logging.getLogger(__name__)

ConsoleMode = Literal["all", "quiet", "output"]

PLAIN_MAX_BYTES = 16 * 1024 * 1024
"""Bytes of output buffered for a plain or JSON stream before lines are dropped: room
for the writer thread's turn to come while a flood goes on (a file keeps up)."""
LIVE_MAX_BYTES = 64 * 1024
"""Bytes of output taken per refresh in live mode (only the last few lines are shown)."""
FAIR = 1 / 64
"""The part of the buffer every process may hand over per batch even when the shared
budget is spent, so one flooding worker never hides another one's few lines (a crash
traceback). Fair shares may go past the budget by a quarter of it, no more."""
SHARE = 3 / 4
"""The part of the buffer one process may take per batch: the rest is kept for the others."""
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
        self._view: PlainView | LiveView
        if self._is_live:
            from supervisor.console.live import LiveView  # a node with no terminal: never

            self._view = LiveView(stream, node)
        else:
            self._view = PlainView(stream, node, json_logs)
        # Formatted bytes a full pipe has not taken yet (written on the loop).
        self._out: deque[Buffer] = deque()
        self._out_bytes = 0
        self._max_bytes = LIVE_MAX_BYTES if self._is_live else PLAIN_MAX_BYTES
        self._share = int(self._max_bytes * SHARE)
        self._fair = int(self._max_bytes * FAIR)
        self._hard_max = self._max_bytes + self._max_bytes // 4
        self._pending: deque[Item] = deque()
        self._pending_bytes = 0
        self._pending_states = 0
        self._taken: dict[str, int] = {}  # bytes per process this batch
        self._missed: dict[str, int] = {}
        self._missed_states = 0
        self._wake: anyio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # run's, for log records' wakes
        self._loop_thread: int | None = None

    # -- producers (event loop, never block) ----------------------------------

    def capacity(self, process: str) -> int:
        """How many bytes of lines a process may hand over now: 0 when full, -1 when not shown.

        -1 tells the pump that no lines nor drop counts are wanted at all, so
        ``--quiet`` costs no framing (see ``pump.OutputConsumer``). Once the
        shared budget is spent, this is still a fair share (``FAIR``): whether
        a process gets it is decided per process in ``deliver``.
        """
        if not self._shows_output:
            return -1
        if self._pending_bytes >= self._hard_max:
            return 0
        return max(self._fair, self._max_bytes - self._pending_bytes)

    def room(self, process: str) -> tuple[int, None]:
        """:meth:`capacity`, and None: dropped output is told in lines ("[N lines dropped]")."""
        return self.capacity(process), None

    def deliver(self, event: Event) -> None:
        """Take one event without blocking; output beyond its process's share is counted."""
        if isinstance(event, OutputChunk):
            if not self._shows_output:
                return
            self._take(event)
        elif not self._shows_states or (self._is_live and isinstance(event, ProgressReported)):
            return  # the live table shows progress itself
        elif self._pending_states >= MAX_PENDING_STATES:
            self._missed_states += 1
        else:
            at = event.at if isinstance(event, StateChanged) else time.time()
            self._pending.append((at, event))
            self._pending_states += 1
        if isinstance(self._view, PlainView) and self._view.writes_on_loop:
            self._write_on_loop(self._view)
        elif self._wake is not None:
            self._wake.set()

    def _write_on_loop(self, view: PlainView) -> None:
        """Format what is pending and write what the stream takes now (see ``writes_on_loop``).

        What a full pipe leaves waits in ``_out``, within the same bound as the
        pending lines (they are counted together), for ``run`` to write once
        the pipe is writable. Drop counts wait until it has taken everything,
        so a pipe that lags gets one note per process, not one per read.
        """
        self._out_bytes -= view.write_on_loop(self._out)
        for _, item in view.prepare(self._drain(with_drops=not self._out)):
            self._out.extend(item.buffers)
            self._out_bytes += sum(map(len, item.buffers))
        self._out_bytes -= view.write_on_loop(self._out)
        self._pending_bytes = self._out_bytes
        if self._out and self._wake is not None:
            self._wake.set()

    def _logged(self) -> None:
        """A log record was captured (JSON), in any thread: wake the writer for it."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            self._wake_writer()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: dsup ends
                loop.call_soon_threadsafe(self._wake_writer)

    def _wake_writer(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _take(self, chunk: OutputChunk) -> None:
        """Take the whole lines that fit the process's share; count the rest for a drop note.

        A process may take lines while the shared budget lasts, but no more
        than its share, so that one flood cannot fill the buffer alone; and its
        fair share per batch whatever the others took. Lines are counted only
        when some are dropped.
        """
        process = chunk.process
        missed = self._missed.pop(process, 0)
        data = chunk.data
        taken = self._taken.get(process, 0)
        pending = self._pending_bytes
        room = max(self._fair - taken, min(self._max_bytes - pending, self._share - taken))
        room = min(room, self._hard_max - pending)
        n = cut_at_line(data, room)
        lost = chunk.dropped + (data.count(b"\n", n) if n < len(data) else 0)
        if n:
            now = time.time()
            if missed:
                self._pending.append((now, Dropped(process, missed)))
                missed = 0
            self._pending.append((now, Lines(process, chunk.stream, data[:n])))
            self._pending_bytes += n
            self._taken[process] = taken + n
        if missed + lost:
            self._missed[process] = missed + lost

    def _drain(self, *, with_drops: bool = True) -> list[Item]:
        """Take everything pending, plus (``with_drops``) a drop count for whatever was lost."""
        items = list(self._pending)
        self._pending.clear()
        self._pending_bytes = self._pending_states = 0
        self._taken.clear()
        if not with_drops:
            return items
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
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        task_status.started()
        with self._view.capturing_logs() as capture:
            if isinstance(capture, LogCapture):  # JSON: records join the stream as they come
                capture.on_record = self._logged
            if isinstance(self._view, PlainView) and self._view.writes_on_loop:
                try:
                    await self._serve_on_loop(self._view, wake)
                finally:
                    self._view.close()
            else:
                await self._serve(wake)

    async def _serve_on_loop(self, view: PlainView, wake: anyio.Event) -> None:
        """Write what a full pipe left once it is writable, and log records (JSON) in time."""
        try:
            while True:
                await wake.wait()
                wake = self._wake = anyio.Event()
                await self._write_out(view)
        finally:
            with anyio.move_on_after(FINAL_FLUSH_SECONDS, shield=True):
                await self._write_out(view)

    async def _write_out(self, view: PlainView) -> None:
        """Write everything pending, waiting for the pipe to be writable while it is full."""
        self._write_on_loop(view)
        while self._out and (fd := view.wait_fd) is not None:  # ends when the pipe drains
            await anyio.wait_writable(fd)
            self._write_on_loop(view)

    async def _serve(self, wake: anyio.Event) -> None:
        limiter = anyio.CapacityLimiter(1)
        batch = Batch([])
        try:
            while True:
                batch = Batch(list(self._view.prepare(self._drain())))
                show = partial(self._view.show, batch, self._snapshot(), final=False, timeout=-1)
                await anyio.to_thread.run_sync(show, abandon_on_cancel=True, limiter=limiter)
                if self._is_live:
                    await self._next_redraw(shown_at=anyio.current_time())
                else:
                    await wake.wait()
                    wake = self._wake = anyio.Event()
        finally:
            # A batch the cancelled thread never took is written now, with the rest.
            last = Batch([*batch.claim(), *self._view.prepare(self._drain())])
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
