"""Draining a worker's output pipe into its log file and, in lines, to a consumer.

This module owns the read end of a worker's stdout or stderr pipe while the pump
runs: reading it in large chunks until EOF, handing every byte to the log
(:class:`supervisor.logs.RotatingLog`), and framing lines in bulk for one
consumer, only as many as it can take right now. It does not own spawning or
exit detection (``child``: exit comes from the process, not from EOF), nor the
log files (``logs``), nor what consumers do with lines.

Speed (issue 3, "Speed and memory"): on the asyncio backend the fd is
registered once with the event loop (``loop.add_reader``) and a callback reads
until the pipe is empty, writes to the log and frames lines, with no task switch
per chunk and no re-arming of the reader. On any other backend the pump falls
back to ``anyio.wait_readable`` in a loop. No thread per pipe either way. Each
callback reads at most :data:`READ_BUDGET` bytes so that one flooding worker
cannot starve the loop; the level-triggered reader calls back on the next turn.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import threading
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.lowlevel

from supervisor.events import OutputLines

if TYPE_CHECKING:
    from supervisor.events import Stream
    from supervisor.logs import RotatingLog

logger = logging.getLogger(__name__)

PIPE_BYTES = 1024 * 1024
READ_BYTES = 1024 * 1024
READ_BUDGET = 4 * 1024 * 1024


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
        try:
            fcntl.fcntl(read_fd, fcntl.F_SETPIPE_SZ, size)
        except OSError as exc:
            logger.debug("pipe fd %d: keeping the default size (%s)", read_fd, exc)
    return read_fd, write_fd


class LineConsumer(Protocol):
    """Something that takes framed lines and says how many it can take now."""

    def capacity(self) -> int:
        """Return how many lines :meth:`deliver` may hand over now.

        0 means full: lines are dropped and counted (``OutputLines.dropped``).
        A negative value means "no lines and no counts wanted now" (e.g. a
        console in ``--quiet`` mode): lines are skipped without being counted,
        the cheapest way to keep a consumer attached.
        """

    def deliver(self, event: OutputLines) -> None:
        """Take lines; never blocks, never raises for being slow.

        Called with at most ``capacity()`` lines, and once more at EOF with no
        lines when drops are still unreported (even if the capacity is 0).
        """


class LineFramer:
    """Splits a byte stream into decoded lines, in bulk, with bounded memory.

    A line longer than ``max_line_bytes`` is cut into pieces of at most that
    many bytes (on a UTF-8 character boundary when one is near), so memory stays
    bounded whatever the stream. Invalid UTF-8 is replaced, never fatal. Pieces
    count as lines for limits and drop counts. When lines are dropped in the
    middle of one, framing resumes at the next newline.
    """

    def __init__(self, max_line_bytes: int) -> None:
        """Create a framer.

        Args:
            max_line_bytes: the largest piece handed out, at least 4 bytes.

        Raises:
            ValueError: when ``max_line_bytes`` is below 4.
        """
        if max_line_bytes < 4:
            raise ValueError(f"max_line_bytes must be >= 4, got {max_line_bytes!r}")
        self._max = max_line_bytes
        self._tail: bytes | bytearray = b""  # start of the current line, <= max bytes
        self._skip = -1  # bytes of the current line being dropped; -1: not dropping
        self._cut = False  # pieces of the current line were already handed out

    def feed(
        self, chunk: bytes | bytearray, limit: int, end: int | None = None
    ) -> tuple[list[str], int]:
        """Frame a chunk: return up to ``limit`` lines and how many were dropped.

        Complete lines come first; drops counted here are lines after them.

        Args:
            chunk: the next bytes of the stream (a reused buffer is fine: the
                framer copies what it keeps).
            limit: how many lines (pieces) the caller can use; 0 drops them all.
            end: how many bytes of ``chunk`` are data (default: all).

        Returns:
            ``(lines, dropped)``: decoded lines without newline, and a count.
        """
        if end is None:
            end = len(chunk)
        if limit <= 0:
            return [], self._drop(chunk, end)
        out: list[str] = []
        first = chunk.find(b"\n", 0, end)
        if first < 0:
            return out, self._grow(chunk[:end], out, limit)
        if self._skip >= 0:
            dropped = self._skipped_pieces(first)
        else:
            head = self._tail + chunk[:first] if self._tail else chunk[:first]
            dropped = 0 if (self._cut and not head) else self._emit(head, out, limit)
        self._tail, self._cut = b"", False
        last = chunk.rfind(b"\n", 0, end)
        if last > first:
            dropped += self._body(chunk, first + 1, last, limit, out)
        if last + 1 < end:
            dropped += self._grow(chunk[last + 1 : end], out, limit)
        return out, dropped

    def flush(self, limit: int) -> tuple[list[str], int]:
        """End the stream: return the last partial line (if any) and drops.

        Args:
            limit: how many lines the caller can use (0 drops the partial line).

        Returns:
            ``(lines, dropped)`` as for :meth:`feed`.
        """
        out: list[str] = []
        dropped = 0
        if self._skip >= 0:
            dropped = self._skipped_pieces(0)
        elif self._tail:
            dropped = self._emit(self._tail, out, limit)
        self._tail, self._cut = b"", False
        return out, dropped

    def _drop(self, chunk: bytes | bytearray, end: int) -> int:
        """Drop a chunk: count its line ends, and start dropping the line it opens."""
        first = chunk.find(b"\n", 0, end)
        if first < 0:
            if not end:
                return 0
            if self._skip < 0:
                self._skip, self._tail = len(self._tail), b""
            self._skip += end
            return 0
        if self._skip >= 0:
            dropped = self._skipped_pieces(first)
        else:
            dropped = 0 if (self._cut and not self._tail and first == 0) else 1
        dropped += chunk.count(b"\n", first + 1, end)
        self._tail, self._cut = b"", False
        rest = end - chunk.rfind(b"\n", 0, end) - 1
        self._skip = rest if rest else -1
        return dropped

    def discard(self, chunk: bytes | bytearray, end: int | None = None) -> None:
        """Skip bytes without counting them; framing resumes at the next newline.

        For a consumer that wants neither lines nor drop counts now: costs one
        backwards search for a newline instead of a count over every byte.
        """
        if end is None:
            end = len(chunk)
        last = chunk.rfind(b"\n", 0, end)
        if last >= 0:
            self._tail, self._cut = b"", False
            rest = end - last - 1
            self._skip = rest if rest else -1
        elif end:
            if self._skip < 0:
                self._skip, self._tail = len(self._tail), b""
            self._skip += end

    def _skipped_pieces(self, extra: int) -> int:
        """End the line being dropped; return how many pieces it counted."""
        size = self._skip + extra
        self._skip = -1
        if size:
            return -(-size // self._max)
        return 0 if self._cut else 1  # nothing left after pieces already handed out

    def _grow(self, data: bytes | bytearray, out: list[str], limit: int) -> int:
        """Add bytes without a newline to the current line; hand out full pieces."""
        if self._skip >= 0:
            self._skip += len(data)
            return 0
        if self._tail:
            data = self._tail + data
        if len(data) <= self._max:
            self._tail = data
            return 0
        pieces, self._tail = _cut(data, self._max)
        self._cut = True
        room = max(limit - len(out), 0)
        out.extend(p.decode("utf-8", "replace") for p in pieces[:room])
        if room >= len(pieces):
            return 0
        self._skip, self._tail = len(self._tail), b""  # the rest of this line is dropped
        return len(pieces) - room

    def _emit(self, line: bytes | bytearray, out: list[str], limit: int) -> int:
        """Hand out one complete line (in pieces if long); return pieces dropped."""
        if len(line) <= self._max:
            if len(out) < limit:
                out.append(line.decode("utf-8", "replace"))
                return 0
            return 1
        pieces, rest = _cut(line, self._max)
        if rest:
            pieces.append(rest)
        room = max(limit - len(out), 0)
        out.extend(p.decode("utf-8", "replace") for p in pieces[:room])
        return max(len(pieces) - room, 0)

    def _body(
        self, chunk: bytes | bytearray, start: int, end: int, limit: int, out: list[str]
    ) -> int:
        """Frame the complete lines of ``chunk[start:end]``; return lines dropped."""
        room = limit - len(out)
        count = chunk.count(b"\n", start, end) + 1
        if room <= 0:
            return count
        if count <= room:
            # Fast path: one decode and one split for the whole span. A str line
            # of c characters came from at most 4c bytes, so no cut is needed
            # when the span, or 4 times its longest line, fits in max.
            text = str(memoryview(chunk)[start:end], "utf-8", "replace")
            lines = text.split("\n")
            if end - start <= self._max or max(map(len, lines)) * 4 <= self._max:
                out.extend(lines)
                return 0
        parts = chunk[start:end].split(b"\n", room)
        dropped = 0
        if len(parts) > room:
            dropped = parts.pop().count(b"\n") + 1
        for part in parts:
            dropped += self._emit(part, out, limit)
        return dropped


def _cut(data: bytes | bytearray, size: int) -> tuple[list[bytes | bytearray], bytes | bytearray]:
    """Cut ``data`` into pieces of at most ``size`` bytes; return them and the rest.

    A cut moves back (at most 3 bytes) to the start of a UTF-8 character, so a
    character is not split across pieces when it need not be. The rest is the
    last ``<= size`` bytes, not yet a piece.
    """
    pieces: list[bytes | bytearray] = []
    start = 0
    while len(data) - start > size:
        cut = start + size
        while cut > start + size - 3 and data[cut] & 0xC0 == 0x80:
            cut -= 1
        pieces.append(data[start:cut])
        start = cut
    return pieces, data[start:]


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

    def __init__(
        self,
        fd: int,
        *,
        process: str,
        stream: Stream,
        log: RotatingLog,
        consumer: LineConsumer | None,
        max_line_bytes: int,
    ) -> None:
        self.fd = fd
        self.process = process
        self.stream: Stream = stream
        self.log = log
        self.consumer = consumer
        self.framer = LineFramer(max_line_bytes)
        self.total = 0
        self.dropped = 0  # not yet reported to the consumer
        self.lost = 0  # bytes the log failed to take in the current failure
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
        """Write to the log; a failing log loses bytes but never stops the draining."""
        try:
            self.log.write(view, flush=idle)
        except OSError as exc:
            if not self.lost:
                logger.error(
                    "process %s: %s log %s failed, output is lost until it works: %s",
                    self.process,
                    self.stream,
                    self.log.path,
                    exc,
                )
            self.lost += len(view)
            return
        if self.lost:
            logger.warning(
                "process %s: %s log %s works again, %d bytes were lost",
                self.process,
                self.stream,
                self.log.path,
                self.lost,
            )
            self.lost = 0

    def _frame(self, buf: bytearray, n: int) -> None:
        """Frame for the consumer; a consumer that raises is dropped, draining goes on."""
        assert self.consumer is not None
        try:
            capacity = self.consumer.capacity()
            if capacity < 0:
                self.framer.discard(buf, n)
                return
            lines, dropped = self.framer.feed(buf, capacity, n)
            self._hand_over(lines, dropped)
        except Exception:
            logger.exception(
                "process %s: %s line consumer failed; lines are no longer framed",
                self.process,
                self.stream,
            )
            self.consumer = None

    def _hand_over(self, lines: list[str], dropped: int) -> None:
        assert self.consumer is not None
        if lines:
            event = OutputLines(
                process=self.process, stream=self.stream, lines=tuple(lines), dropped=self.dropped
            )
            self.dropped = dropped
            self.consumer.deliver(event)
        else:
            self.dropped += dropped

    def finish(self) -> None:
        """At EOF: hand over the last partial line and report drops left."""
        if self.consumer is not None:
            lines, dropped = self.framer.flush(max(self.consumer.capacity(), 0))
            self._hand_over(lines, dropped)
            if self.dropped:
                event = OutputLines(
                    process=self.process, stream=self.stream, lines=(), dropped=self.dropped
                )
                self.dropped = 0
                self.consumer.deliver(event)
        self.flush_log()


async def pump(
    fd: int,
    *,
    process: str,
    stream: Stream,
    log: RotatingLog,
    consumer: LineConsumer | None,
    max_line_bytes: int,
) -> int:
    """Drain a pipe's read end into a log and a line consumer until EOF.

    Every byte goes to ``log``, flushed whenever the pipe goes idle. Lines are
    framed only for ``consumer`` and only as many as its ``capacity()``; the rest
    are counted and reported in the next delivery's ``dropped``. The consumer
    never slows the draining. The fd is made non-blocking here; it stays the
    caller's to close (after this returns or is cancelled), and so does the log.

    Args:
        fd: the read end of the pipe (e.g. from :func:`make_pipe`).
        process: process name ``program:index``, for events and log records.
        stream: ``stdout`` or ``stderr``.
        log: where every byte goes.
        consumer: who gets lines; None for log capture only (no framing or
            counting at all, the cheapest).
        max_line_bytes: the largest line piece handed to the consumer.

    Returns:
        The number of bytes read.

    When cancelled, stops reading at once (the log is flushed, bytes still in
    the pipe stay there) and re-raises.
    """
    os.set_blocking(fd, False)
    state = _Drain(
        fd,
        process=process,
        stream=stream,
        log=log,
        consumer=consumer,
        max_line_bytes=max_line_bytes,
    )
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        await _pump_waiting(state)  # not asyncio (trio): no add_reader there
    else:
        await _pump_reader(state, loop)
    state.finish()
    logger.debug("%s %s: EOF after %d bytes", process, stream, state.total)
    return state.total


async def _pump_reader(state: _Drain, loop: asyncio.AbstractEventLoop) -> None:
    """Drain with a reader registered once on the asyncio loop."""
    done = anyio.Event()
    failure: list[BaseException] = []

    def on_readable() -> None:
        try:
            state.drain()
        except BaseException as exc:  # handed to the pump task, re-raised there
            failure.append(exc)
        if state.eof or failure:
            loop.remove_reader(state.fd)
            done.set()

    loop.add_reader(state.fd, on_readable)
    try:
        await done.wait()
    finally:
        loop.remove_reader(state.fd)
        state.flush_log()
    if failure:
        raise failure[0]


async def _pump_waiting(state: _Drain) -> None:
    """Drain with ``anyio.wait_readable`` per wake-up (any backend, re-armed each time)."""
    try:
        while not state.eof:
            await anyio.wait_readable(state.fd)
            while not state.drain():
                await anyio.lowlevel.checkpoint()
    finally:
        state.flush_log()
