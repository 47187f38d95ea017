"""The hand-over between the log watchers of one follow (``tail -f``) and its reader.

Bounded in bytes: a reader too slow for the lines gets the count of those it missed, so a
slow client never holds memory nor blocks a watcher.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import deque
from typing import TYPE_CHECKING

import anyio

from supervisor.commands.reports import LogLines

if TYPE_CHECKING:
    from supervisor.events import Stream

LINE_OVERHEAD_BYTES = 64
"""The least one buffered line costs (an empty str object and its slot)."""
_SLOT_BYTES = 8  # the line's pointer in its chunk's tuple


def _cost(chunk: LogLines) -> int:
    """The bytes the chunk's lines take in memory (not characters).

    A str holds 1, 2 or 4 bytes per character (PEP 393): a line of emoji takes
    four times a line of ASCII of the same length.
    """
    return sum(map(sys.getsizeof, chunk.lines)) + _SLOT_BYTES * len(chunk.lines)


class FollowBuffer:
    """Lines waiting for one reader, from several watchers, bounded in bytes.

    Watchers ask :meth:`room` before framing what they read and count the
    lines beyond it as dropped (:meth:`drop`) instead of decoding them, so a
    stalled reader costs at most about ``max_bytes`` (plus one read of each
    watcher) and little CPU. A process's drops are reported in its next
    chunk (``LogLines.dropped``), or alone once the reader has caught up.
    Iterate the buffer for the chunks; iteration ends after :meth:`close`.
    """

    def __init__(self, max_bytes: int) -> None:
        """Create an empty buffer.

        Args:
            max_bytes: the most bytes of lines held before watchers drop.
        """
        self.max_bytes = max_bytes
        self._chunks: deque[tuple[LogLines, int]] = deque()
        self._bytes = 0
        self._dropped: dict[tuple[str, Stream], int] = {}
        self._ready = anyio.Event()
        self._closed = False

    @property
    def buffered_bytes(self) -> int:
        """The estimated bytes of the lines waiting for the reader."""
        return self._bytes

    def room(self) -> int:
        """How many more lines to decode now: 0 once the reader has fallen behind."""
        if self._closed:
            return 0
        return max(0, self.max_bytes - self._bytes) // LINE_OVERHEAD_BYTES

    def put(self, chunk: LogLines) -> None:
        """Queue a chunk, with the drops of its process counted before it."""
        if self._closed:
            return
        missed = self._dropped.pop((chunk.process, chunk.stream), 0)
        if missed:
            chunk = dataclasses.replace(chunk, dropped=chunk.dropped + missed)
        cost = _cost(chunk)
        self._chunks.append((chunk, cost))
        self._bytes += cost
        self._ready.set()

    def drop(self, process: str, stream: Stream, count: int) -> None:
        """Count ``count`` lines of a process that the reader will never get."""
        if count <= 0 or self._closed:
            return
        key = (process, stream)
        self._dropped[key] = self._dropped.get(key, 0) + count
        self._ready.set()

    def close(self) -> None:
        """End the iteration and release every chunk held."""
        self._closed = True
        self._chunks.clear()
        self._dropped.clear()
        self._bytes = 0
        self._ready.set()

    def __aiter__(self) -> FollowBuffer:
        return self

    async def __anext__(self) -> LogLines:
        while not self._closed:
            if self._chunks:
                chunk, cost = self._chunks.popleft()
                self._bytes -= cost
                return chunk
            if self._dropped:
                (process, stream), missed = self._dropped.popitem()
                return LogLines(process=process, stream=stream, lines=(), dropped=missed)
            self._ready = anyio.Event()
            await self._ready.wait()
        raise StopAsyncIteration
