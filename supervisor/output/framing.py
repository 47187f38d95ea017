"""Framing a byte stream into chunks of complete lines, in bulk, with bounded memory.

Long lines are cut into pieces on UTF-8 boundaries; nothing is decoded here, so the pump hands
out bytes and each consumer decodes only what it keeps. Pipes and log files share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

_Buffer = bytes | bytearray
# A part of the framed lines: (buffer, start, stop); every line ends with a newline.
_Segment = tuple[_Buffer, int, int]
_NEWLINE: _Segment = (b"\n", 0, 1)


@dataclass(frozen=True, slots=True)
class Framed:
    """What one call of :class:`ChunkFramer` hands out.

    Attributes:
        data: complete lines, each ending with ``b"\\n"`` (a piece of a long
            line ends with one too); raw bytes, at most the room asked for.
        dropped_bytes: bytes of the complete lines after ``data`` that did not fit.
        dropped_lines: how many lines those were; counted only when asked
            (a pass over the dropped bytes), else 0.
        uncounted_bytes: the last of the dropped bytes, whose lines were not
            counted: all of them when no count was asked, those past
            ``count_bytes`` when a bounded one was.
    """

    data: bytes = b""
    dropped_bytes: int = 0
    dropped_lines: int = 0
    uncounted_bytes: int = 0


NOTHING = Framed()


class ChunkFramer:
    """Splits a byte stream into chunks of complete lines, with bounded memory.

    A line longer than ``max_line_bytes`` is cut into pieces of at most that
    many bytes (on a UTF-8 character boundary when one is near), each ending
    with a newline of its own, so memory stays bounded whatever the stream. The
    start of a line is kept across chunks until its newline comes; what is
    handed out is always whole lines (or pieces), never decoded. Pieces count
    as lines for drop counts. In the usual chunk (no line too long) the cost is
    a few ``memchr`` passes and one copy of what is taken.
    """

    def __init__(self, max_line_bytes: int) -> None:
        """Create a framer.

        Args:
            max_line_bytes: the largest piece handed out (newline not counted),
                at least 4 bytes.

        Raises:
            ValueError: when ``max_line_bytes`` is below 4.
        """
        if max_line_bytes < 4:
            raise ValueError(f"max_line_bytes must be >= 4, got {max_line_bytes!r}")
        self._max = max_line_bytes
        self._tail: bytes = b""  # start of the current line, <= max bytes
        self._lost = False  # the current line's start was discarded: it is skipped
        # A line longer than max fills a whole window of this many bytes, at any
        # alignment: a newline in every window proves that no line is too long.
        self._window = (max_line_bytes + 2) // 2

    def feed(
        self,
        chunk: _Buffer,
        room: int,
        *,
        end: int | None = None,
        count: bool = False,
        count_bytes: int | None = None,
    ) -> Framed:
        """Frame the next bytes of the stream; hand out the lines that fit in ``room``.

        Args:
            chunk: the next bytes (a reused buffer is fine: what is kept is copied).
            room: bytes the caller takes: the leading whole lines within it are
                handed out, the other complete lines are dropped.
            end: how many bytes of ``chunk`` are data (default: all).
            count: count the dropped lines (a pass over their bytes).
            count_bytes: with ``count``, count only the lines within the first
                this many dropped bytes (a bounded pass); None: all of them.
        """
        if end is None:
            end = len(chunk)
        return _take(self._frame(chunk, end), room, count=_limit(count, count_bytes))

    def skip(self, chunk: _Buffer, end: int | None = None) -> int:
        """Drop the complete lines of the next bytes, as ``feed`` with no room does; their bytes.

        For a full consumer that counts no lines (a flood once the relay's stream
        is full): a ``memchr`` pass or two and no list of lines. The start of
        the last line is kept as ``feed`` keeps it, so framing goes on alike;
        only a line longer than ``max_line_bytes`` counts its bytes without the
        newline each of its pieces would get.
        """
        if end is None:
            end = len(chunk)
        last = chunk.rfind(b"\n", 0, end)
        if last < 0:
            return _size(self._grow(chunk, 0, end))
        start = 0
        if self._lost:  # the rest of a discarded line
            start = chunk.find(b"\n", 0, end) + 1
            self._lost = False
        elif self._tail:
            start = -len(self._tail)  # the kept start of the first line is dropped with it
            self._tail = b""
        if last + 1 == end:  # the usual read of a flood: whole lines
            return end - start
        return last + 1 - start + _size(self._grow(chunk, last + 1, end))

    def flush(self, room: int, *, count: bool = False, count_bytes: int | None = None) -> Framed:
        """End the stream: the last partial line, given a newline, if it fits ``room``.

        ``count`` and ``count_bytes`` as :meth:`feed`'s.
        """
        tail, self._tail, self._lost = self._tail, b"", False
        if not tail:
            return NOTHING
        return _take([(tail, 0, len(tail)), _NEWLINE], room, count=_limit(count, count_bytes))

    def discard(self, chunk: _Buffer, end: int | None = None) -> None:
        """Skip bytes, neither handed out nor counted; framing resumes at the next newline.

        For a consumer that wants no lines now: one backwards search for a
        newline, no copy and no count.
        """
        if end is None:
            end = len(chunk)
        last = chunk.rfind(b"\n", 0, end)
        if last >= 0:
            self._tail, self._lost = b"", last + 1 < end
        elif end:
            self._tail, self._lost = b"", True

    def _frame(self, chunk: _Buffer, end: int) -> list[_Segment]:
        """The complete lines this chunk ends, as segments; keep the partial last line."""
        last = chunk.rfind(b"\n", 0, end)
        if last < 0:
            return self._grow(chunk, 0, end)
        start = 0
        if self._lost:  # the rest of a discarded line
            start = chunk.find(b"\n", 0, end) + 1
            self._tail, self._lost = b"", False
        segments = self._lines(chunk, start, last + 1)
        segments.extend(self._grow(chunk, last + 1, end))
        return segments

    def _lines(self, chunk: _Buffer, start: int, stop: int) -> list[_Segment]:
        """Segments of ``chunk[start:stop]`` (ending with a newline) after the kept tail."""
        tail, self._tail = self._tail, b""
        if start >= stop:
            return []
        first = chunk.find(b"\n", start, stop)
        if len(tail) + first - start <= self._max and self._fits(chunk, first + 1, stop):
            if not tail:
                return [(chunk, start, stop)]
            return [(tail, 0, len(tail)), (chunk, start, stop)]
        return self._split(chunk, start, stop, tail)

    def _fits(self, chunk: _Buffer, start: int, stop: int) -> bool:
        """Whether no line of ``chunk[start:stop]`` is longer than max (windows of newlines)."""
        window = self._window
        return all(
            chunk.find(b"\n", at, at + window) >= 0 for at in range(start, stop - window, window)
        )

    def _split(self, chunk: _Buffer, start: int, stop: int, tail: bytes) -> list[_Segment]:
        """Line by line, cutting long lines into pieces (only for a chunk that has one)."""
        segments: list[_Segment] = []
        at = start
        while at < stop:
            newline = chunk.find(b"\n", at, stop)
            if tail or newline - at > self._max:
                for piece in _pieces(tail + bytes(chunk[at:newline]), self._max):
                    segments.extend((piece, _NEWLINE))
                tail = b""
            elif segments and segments[-1][0] is chunk and segments[-1][2] == at:
                segments[-1] = (chunk, segments[-1][1], newline + 1)
            else:
                segments.append((chunk, at, newline + 1))
            at = newline + 1
        return segments

    def _grow(self, chunk: _Buffer, start: int, end: int) -> list[_Segment]:
        """Add bytes without a newline to the current line; frame its full pieces."""
        if start >= end or self._lost:
            return []
        data = self._tail + bytes(chunk[start:end])
        if len(data) <= self._max:
            self._tail = data
            return []
        pieces = _pieces(data, self._max)
        last = pieces.pop()  # the rest, not yet a piece: the line goes on
        self._tail = data[last[1] : last[2]]  # the line's next piece starts with it
        segments: list[_Segment] = []
        for piece in pieces:
            segments.extend((piece, _NEWLINE))
        return segments


def _pieces(data: bytes, size: int) -> list[_Segment]:
    """``data`` in segments of at most ``size`` bytes, cut between UTF-8 characters.

    A cut moves back (at most 3 bytes) to the start of a character, so one is
    not split across pieces when it need not be. The last segment is the rest.
    """
    pieces: list[_Segment] = []
    start = 0
    while len(data) - start > size:
        cut = start + size
        while cut > start + size - 3 and data[cut] & 0xC0 == 0x80:
            cut -= 1
        pieces.append((data, start, cut))
        start = cut
    pieces.append((data, start, len(data)))
    return pieces


def _size(segments: list[_Segment]) -> int:
    return sum(stop - start for _, start, stop in segments)


def _limit(count: bool, count_bytes: int | None) -> int:
    """The dropped bytes whose lines are counted: none, some, or (-1) all."""
    if not count:
        return 0
    return -1 if count_bytes is None else max(count_bytes, 0)


def _take(segments: list[_Segment], room: int, *, count: int) -> Framed:
    """The leading whole lines of ``segments`` within ``room`` bytes, and what is dropped.

    The lines of the dropped bytes are counted within the first ``count`` of them
    (-1: all).
    """
    total = _size(segments)
    if room <= 0 < total:  # a full consumer, once a read in a flood: no copy, no walk
        return _dropped(b"", total, segments, count)
    if total <= room:
        if not segments:
            return NOTHING
        if len(segments) == 1:
            buf, start, stop = segments[0]
            return Framed(bytes(memoryview(buf)[start:stop]))
        return Framed(b"".join(memoryview(buf)[start:stop] for buf, start, stop in segments))
    taken: list[_Segment] = []
    rest = segments
    left = room
    for index, (buf, start, stop) in enumerate(segments):
        size = stop - start
        if size <= left:
            taken.append((buf, start, stop))
            left -= size
            continue
        cut = buf.rfind(b"\n", start, start + left) + 1 if left > 0 else 0
        if cut > start:
            taken.append((buf, start, cut))
            rest = [(buf, cut, stop), *segments[index + 1 :]]
        else:
            rest = segments[index:]
        break
    # A segment ends where a line ends only at a newline: give back a cut line's start.
    while taken and not _ends_line(taken[-1]):
        rest.insert(0, taken.pop())
    data = b"".join(memoryview(buf)[start:stop] for buf, start, stop in taken)
    return _dropped(data, total - len(data), rest, count)


def _dropped(data: bytes, dropped: int, rest: list[_Segment], count: int) -> Framed:
    """``data`` handed out, and ``dropped`` bytes (``rest``) counted as ``count`` asks."""
    if not count:
        return Framed(data, dropped, 0, dropped)
    if count < 0 or count >= dropped:
        return Framed(data, dropped, _count_lines(rest))
    lines, counted = _count_within(rest, count)
    return Framed(data, dropped, lines, dropped - counted)


def _ends_line(segment: _Segment) -> bool:
    buf, _, stop = segment
    return buf[stop - 1] == 0x0A


def _count_lines(segments: Iterable[_Segment]) -> int:
    return sum(buf.count(b"\n", start, stop) for buf, start, stop in segments)


def _count_within(segments: Iterable[_Segment], limit: int) -> tuple[int, int]:
    """The lines that end within the first ``limit`` bytes of ``segments``, and their bytes."""
    lines = seen = counted = 0  # counted: the bytes up to the last newline seen
    for buf, start, stop in segments:
        end = min(stop, start + limit - seen)
        last = buf.rfind(b"\n", start, end)
        if last >= 0:
            lines += buf.count(b"\n", start, last + 1)
            counted = seen + last + 1 - start
        seen += end - start
        if end < stop:
            break
    return lines, counted


def cut_at_line(data: bytes, room: int) -> int:
    """Where the leading whole lines of ``data`` within ``room`` bytes end (0: none fit)."""
    if len(data) <= room:
        return len(data)
    return data.rfind(b"\n", 0, max(room, 0)) + 1


def last_lines(data: bytes, count: int) -> int:
    """Where the last ``count`` lines of ``data`` (complete lines) begin: a few ``rfind``."""
    at = len(data) - 1
    for _ in range(count):
        at = data.rfind(b"\n", 0, at)
        if at < 0:
            return 0
    return at + 1


def decode_lines(data: bytes) -> list[str]:
    """Complete lines of ``data`` decoded (invalid UTF-8 replaced), without their newlines."""
    if not data:
        return []
    return str(data, "utf-8", "replace").split("\n")[:-1]
