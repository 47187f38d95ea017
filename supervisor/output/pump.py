"""Draining an output pipe in large chunks: every byte to the log, whole lines to one consumer.

A consumer gets, as raw bytes, only the lines it has room for; the rest are dropped and
reported, so a slow sink never stalls a pipe (docs/architecture.md: "Output"; figures:
bench/throughput.py).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from typing import TYPE_CHECKING, Protocol

import anyio

from supervisor.events import OutputChunk
from supervisor.output.allocator import tune_for_floods
from supervisor.output.framing import ChunkFramer, Framed
from supervisor.output.readable import call_when_readable

if TYPE_CHECKING:
    from collections.abc import Callable

    from supervisor.events import Stream
    from supervisor.output.logfile import RotatingLog
    from supervisor.output.readable import Reader, TaskStarter

logger = logging.getLogger(__name__)

PIPE_BYTES = 1024 * 1024
READ_BYTES = 1024 * 1024
READ_BUDGET = 4 * 1024 * 1024
BIG_READ_BYTES = 128 * 1024
"""Lines this big handed out are buffers that glibc would map anew (``allocator``)."""


def make_pipe(size: int = PIPE_BYTES) -> tuple[int, int]:
    """Create a pipe for a worker's output: ``(read_fd, write_fd)``.

    Both ends are close-on-exec (``Popen`` dup2s the write end onto the
    child's 1 or 2, which clears the flag there); the read end is non-blocking.
    The pipe is grown to ``size`` bytes with ``F_SETPIPE_SZ`` where the kernel
    allows it (``/proc/sys/fs/pipe-max-size``, per-user quotas); otherwise it
    keeps its default size, quietly: a bigger pipe only means fewer wake-ups.

    Args:
        size: the wanted pipe capacity in bytes; 0 keeps the kernel default.

    Returns:
        The read end (for :func:`pump`) and the write end (for the child).
    """
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(read_fd, False)
    if size:
        grow_pipe(read_fd, size)
    return read_fd, write_fd


def grow_pipe(fd: int, size: int = PIPE_BYTES) -> None:
    """Grow the pipe of ``fd`` to ``size`` bytes where the kernel allows it; else keep it.

    Quietly: a bigger pipe only means fewer wake-ups (of dsup, or of whoever
    reads dsup's stdout).
    """
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except OSError as exc:
        logger.debug("pipe fd %d: keeping the default size (%s)", fd, exc)


class DropTally:
    """Bytes of whole lines dropped for a full consumer, by size only, until it takes them.

    A consumer that counts few dropped lines hands the pump one per process
    (with :meth:`OutputConsumer.room`). While it is full and counts none
    (``count_bytes`` 0), a read only adds its lines' size here: no chunk, no
    ``deliver``, no pass over the bytes. The consumer takes the sum when it looks, and
    before any later lines of that process.

    Attributes:
        size: the bytes added since the last :meth:`take`.
        count_bytes: dropped bytes whose lines the consumer still wants counted:
            the pump counts lines in at most this many per read (the rest of a
            chunk's drop is its ``uncounted_bytes``); 0: sized only.
        is_held: the consumer's answer (full, sized only) holds until it sets
            this back to False: meanwhile the pump adds each read's size here
            without asking :meth:`OutputConsumer.room` (a flood's reads cost
            no call).
    """

    __slots__ = ("count_bytes", "is_held", "size")

    def __init__(self, count_bytes: int = 0) -> None:
        self.size = 0
        self.count_bytes = count_bytes
        self.is_held = False

    def take(self) -> int:
        """The bytes added since the last take; the tally starts again from 0."""
        size, self.size = self.size, 0
        return size


class OutputConsumer(Protocol):
    """Something that takes whole lines as bytes and says how many bytes it takes now."""

    def room(self, process: str) -> tuple[int, DropTally | None]:
        """Return how many bytes of whole lines of ``process`` :meth:`deliver` may take
        now, and how the lines dropped are reported: asked once per read.

        The bytes: 0 means full: the lines are dropped and reported. A negative
        value means "nothing wanted now" (a console in ``--quiet`` mode, a process
        whose output is not relayed): bytes are skipped unreported, with no copy
        and no count, the cheapest way to keep a consumer attached.

        The report: None: in the chunks, counted (a pass over every dropped
        byte). A tally: counted in the chunks within its ``count_bytes``, by size
        only past them; while the consumer is full and counts no more, in the
        tally instead of a chunk per read (the consumer takes it when it looks).
        While that tally ``is_held``, the pump does not ask again.
        """

    def deliver(self, chunk: OutputChunk) -> None:
        """Take a chunk; never blocks, never raises for being slow.

        Called with at most ``room()`` bytes of lines, and the size (and
        count) of the lines dropped right after them, within the read that
        dropped them: a chunk may hold no lines, only a drop.
        """


_local = threading.local()
_NOTHING = memoryview(b"")


def _read_buffer() -> tuple[bytearray, memoryview]:
    """The read buffer of this thread's event loop, shared by all its pumps."""
    try:
        pair: tuple[bytearray, memoryview] = _local.buffer
    except AttributeError:
        buf = bytearray(READ_BYTES)
        pair = _local.buffer = (buf, memoryview(buf))
    return pair


class _Drain:
    """The state of one pump: reads, log writes, framing, drop counts."""

    __slots__ = (
        "consumer",
        "eof",
        "failed_at",
        "fd",
        "framer",
        "log",
        "owed",
        "process",
        "stream",
        "tally",
        "total",
    )

    def __init__(
        self,
        fd: int,
        *,
        process: str,
        stream: Stream,
        log: RotatingLog,
        consumer: OutputConsumer | None,
        max_line_bytes: int,
    ) -> None:
        self.fd = fd
        self.process = process
        self.stream: Stream = stream
        self.log = log
        self.consumer = consumer
        self.framer = ChunkFramer(max_line_bytes)
        self.tally: DropTally | None = None  # the consumer's last answer's
        self.total = 0
        # While the log fails: its ``written`` when it failed, and the bytes it
        # was given since (with those it held then), to count what it lost.
        self.failed_at: int | None = None
        self.owed = 0
        self.eof = False

    def drain(self) -> bool:
        """Read until the pipe is empty, EOF, or the budget; True when done reading.

        Returns False only when the budget ran out with data left (call again).
        Synchronous from the first read to the last, so every pump of a thread
        can share one read buffer.
        """
        buf, view = _read_buffer()
        budget = READ_BUDGET
        while budget > 0:
            try:
                n = os.readv(self.fd, (buf,))
            except BlockingIOError:
                break
            if not n:
                self.eof = True
                break
            self.total += n
            idle = n < len(buf)  # a short read from a pipe means it is empty now
            self._to_log(view[:n], idle)
            if self.consumer is not None:
                self._frame(buf, n)
            if idle:
                return True
            budget -= n
        else:
            return False
        self.flush_log()  # the pipe is idle: let tail see everything
        return True

    def flush_log(self) -> None:
        """Flush the log's buffer; a failure is reported, not raised."""
        self._to_log(_NOTHING, idle=True)

    def _to_log(self, view: memoryview, idle: bool) -> None:
        """Write to the log; a failing log loses bytes but never stops the draining.

        A failure is reported once and the next write tries again (a full disk,
        a log that cannot be reopened). It is said to work again only once bytes
        have reached the file, with the count of those that never did.
        """
        written, buffered = self.log.written, self.log.buffered
        try:
            self.log.write(view, flush=idle)
        except Exception as exc:  # a sink's failure: never the end of the drain
            if self.failed_at is None:
                self.failed_at, self.owed = written, buffered
                logger.error(
                    "process %s: %s log %s failed, output is lost until it works: %s",
                    self.process,
                    self.stream,
                    self.log.path,
                    exc,
                    exc_info=not isinstance(exc, OSError),
                )
            self.owed += len(view)
            return
        if self.failed_at is None:
            return
        self.owed += len(view)
        if self.log.written > self.failed_at:
            lost = self.owed - (self.log.written - self.failed_at) - self.log.buffered
            self.failed_at = None
            logger.warning(
                "process %s: %s log %s works again, %d bytes were lost",
                self.process,
                self.stream,
                self.log.path,
                lost,
            )

    def _frame(self, buf: bytearray, n: int) -> None:
        """Frame for the consumer; a consumer that raises is dropped, draining goes on."""
        consumer = self.consumer
        assert consumer is not None
        try:
            tally = self.tally
            if tally is not None and tally.is_held:  # full, sized only: not asked again
                tally.size += self.framer.skip(buf, n)
                return
            room, tally = consumer.room(self.process)
            self.tally = tally
            if room < 0:
                self.framer.discard(buf, n)
                return
            budget = None if tally is None else tally.count_bytes
            if room == 0 and tally is not None and budget == 0:  # full, sized only: no chunk
                tally.size += self.framer.skip(buf, n)
                return
            if room > BIG_READ_BYTES and n > BIG_READ_BYTES:
                tune_for_floods()  # big buffers from now on: keep them in the heap
            framed = self.framer.feed(buf, room, end=n, count=True, count_bytes=budget)
            self._hand_over(framed)
        except Exception:
            logger.exception(
                "process %s: %s output consumer failed; output is no longer framed",
                self.process,
                self.stream,
            )
            self.consumer = None

    def _hand_over(self, framed: Framed) -> None:
        """Deliver the lines taken and the drops after them, at once (never held back).

        A burst that ends with the pipe idle has its drop note shown right away.
        """
        assert self.consumer is not None
        if framed.data or framed.dropped_bytes:
            self.consumer.deliver(
                OutputChunk(
                    process=self.process,
                    stream=self.stream,
                    data=framed.data,
                    dropped_bytes=framed.dropped_bytes,
                    dropped=framed.dropped_lines,
                    uncounted_bytes=framed.uncounted_bytes,
                )
            )

    def finish(self) -> None:
        """At EOF: hand over the last partial line (or report it dropped)."""
        consumer = self.consumer
        if consumer is not None:
            room, tally = consumer.room(self.process)
            if room >= 0:
                budget = None if tally is None else tally.count_bytes
                self._hand_over(self.framer.flush(room, count=True, count_bytes=budget))
        self.flush_log()


class Pump:
    """One pipe drained into a log and an output consumer until EOF, from loop callbacks.

    On asyncio it holds no task: its fd is a loop reader, registered once
    (:func:`~supervisor.output.readable.call_when_readable`), and each callback
    reads until the pipe is empty or :data:`READ_BUDGET` is spent. Every byte
    goes to ``log``, flushed whenever the pipe goes idle; whole lines go to
    ``consumer`` as bytes, as many as its ``room()``, the rest reported at
    once in the same chunk (or, once it is full, added to its drop tally).
    The consumer never slows the draining. The fd
    (made non-blocking here) and the log stay the caller's to close, after the
    pump has ended.

    Args:
        fd: the read end of the pipe (e.g. from :func:`make_pipe`).
        process: process name ``program:index``, for events and log records.
        stream: ``stdout`` or ``stderr``.
        log: where every byte goes.
        consumer: who gets lines; None for log capture only (no framing at
            all, the cheapest).
        max_line_bytes: the largest line piece handed to the consumer.
        on_end: called once when the pump ends: at EOF, on :meth:`stop`, or
            when reading failed (logged).
    """

    __slots__ = ("_on_end", "_reader", "_state")

    def __init__(
        self,
        fd: int,
        *,
        process: str,
        stream: Stream,
        log: RotatingLog,
        consumer: OutputConsumer | None,
        max_line_bytes: int,
        on_end: Callable[[], None],
    ) -> None:
        os.set_blocking(fd, False)
        self._state = _Drain(
            fd,
            process=process,
            stream=stream,
            log=log,
            consumer=consumer,
            max_line_bytes=max_line_bytes,
        )
        self._on_end: Callable[[], None] | None = on_end
        self._reader: Reader | None = None

    @property
    def total(self) -> int:
        """The bytes read so far."""
        return self._state.total

    def start(self, tg: TaskStarter) -> None:
        """Start draining (``tg`` holds the waiting task off asyncio only)."""
        self._reader = call_when_readable(self._state.fd, self._readable, tg)

    def stop(self) -> None:
        """Stop reading at once (bytes still in the pipe stay there) and flush the log."""
        self._end(at_eof=False)

    def _readable(self) -> None:
        state = self._state
        try:
            state.drain()
        except Exception:  # this stream's capture ends, the rest of the node goes on
            logger.exception("process %s: %s capture failed", state.process, state.stream)
            self._end(at_eof=False)
            return
        if state.eof:
            self._end(at_eof=True)

    def _end(self, *, at_eof: bool) -> None:
        on_end, self._on_end = self._on_end, None
        if on_end is None:
            return
        if self._reader is not None:
            self._reader.stop()
        state = self._state
        try:
            if at_eof:
                state.finish()
                logger.debug("%s %s: EOF after %d bytes", state.process, state.stream, state.total)
        except Exception:
            logger.exception("process %s: %s capture failed", state.process, state.stream)
        state.flush_log()
        on_end()


async def pump(
    fd: int,
    *,
    process: str,
    stream: Stream,
    log: RotatingLog,
    consumer: OutputConsumer | None,
    max_line_bytes: int,
) -> int:
    """Drain a pipe's read end into a log and an output consumer until EOF (a :class:`Pump`).

    Args:
        fd: the read end of the pipe (e.g. from :func:`make_pipe`).
        process: process name ``program:index``, for events and log records.
        stream: ``stdout`` or ``stderr``.
        log: where every byte goes.
        consumer: who gets lines; None for log capture only.
        max_line_bytes: the largest line piece handed to the consumer.

    Returns:
        The number of bytes read.

    When cancelled, stops reading at once (the log is flushed, bytes still in
    the pipe stay there) and re-raises.
    """
    ended = anyio.Event()
    async with anyio.create_task_group() as tg:
        drained = Pump(
            fd,
            process=process,
            stream=stream,
            log=log,
            consumer=consumer,
            max_line_bytes=max_line_bytes,
            on_end=ended.set,
        )
        drained.start(tg)
        try:
            await ended.wait()
        finally:
            drained.stop()
    return drained.total
