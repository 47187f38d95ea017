"""Framing bytes into decoded lines in bulk, with bounded memory whatever a process prints.

Long lines are cut into pieces and invalid UTF-8 is replaced; pipes and log files share it, so
lines look the same live and from ``tail``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, overload

if TYPE_CHECKING:
    from collections.abc import Iterator


class LineBlock(Sequence[str]):
    """Complete lines kept as one string, split only when someone asks for a line.

    The framer hands out a chunk of short lines this way: one decode and no
    object per line, so a consumer that writes lines in bulk (the plain
    console) pays per chunk, not per line. Read as a sequence it is the lines.

    Args:
        text: the lines joined by ``"\\n"`` (no newline after the last).
        count: how many lines: ``text.count("\\n") + 1``.
    """

    __slots__ = ("_lines", "line_count", "text")

    def __init__(self, text: str, count: int) -> None:
        self.text = text
        self.line_count = count
        self._lines: list[str] | None = None

    @property
    def chars(self) -> int:
        """Characters of the lines, without newlines: ``sum(map(len, self))``."""
        return len(self.text) - self.line_count + 1

    def head(self, budget: int) -> LineBlock:
        """The leading lines, each taken while the characters before it are below ``budget``.

        Found with counts over the text, without a string per line: the
        ``budget``-th character (newlines not counted) is in the last line taken.

        Args:
            budget: characters (newlines not counted), at least 1.
        """
        at = budget
        newlines = self.text.count("\n", 0, at)
        while at < budget + newlines:  # bounded: every round passes at least one newline
            start, at = at, budget + newlines
            newlines += self.text.count("\n", start, at)
        end = self.text.find("\n", at)
        if end < 0:
            return self
        return LineBlock(self.text[:end], newlines + 1)

    def _split(self) -> list[str]:
        if self._lines is None:
            self._lines = self.text.split("\n")
        return self._lines

    def __len__(self) -> int:
        return self.line_count

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return tuple(self._split()[index])
        return self._split()[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._split())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LineBlock):
            return self.text == other.text and self.line_count == other.line_count
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"LineBlock({self.line_count} lines, {len(self.text)} chars)"


def joined(lines: Sequence[str], sep: str) -> str:
    """``sep.join(lines)``, without splitting a :class:`LineBlock` first."""
    if isinstance(lines, LineBlock):
        return lines.text if sep == "\n" else lines.text.replace("\n", sep)
    return sep.join(lines)


class LineFramer:
    """Splits a byte stream into decoded lines, in bulk, with bounded memory.

    A line longer than ``max_line_bytes`` is cut into pieces of at most that
    many bytes (on a UTF-8 character boundary when one is near), so memory stays
    bounded whatever the stream. Invalid UTF-8 is replaced, never fatal. Pieces
    count as lines for limits and drop counts. When lines are dropped in the
    middle of one, framing resumes at the next newline.

    A chunk whose lines all fit (in number and size) comes out as one
    :class:`LineBlock`: a decode and a count over the chunk, nothing per line.
    """

    def __init__(self, max_line_bytes: int, *, bulk: bool = True) -> None:
        """Create a framer.

        Args:
            max_line_bytes: the largest piece handed out, at least 4 bytes.
            bulk: hand out a chunk of short lines as one :class:`LineBlock`;
                False frames line by line (the reference the block is tested
                against, byte for byte).

        Raises:
            ValueError: when ``max_line_bytes`` is below 4.
        """
        if max_line_bytes < 4:
            raise ValueError(f"max_line_bytes must be >= 4, got {max_line_bytes!r}")
        self._max = max_line_bytes
        self._tail: bytes | bytearray = b""  # start of the current line, <= max bytes
        self._skip = -1  # bytes of the current line being dropped; -1: not dropping
        self._cut = False  # pieces of the current line were already handed out
        self._bulk = bulk
        # A line longer than max fills a whole window of this many bytes, at any
        # alignment: a newline in every window proves that no line is too long.
        self._window = (max_line_bytes + 2) // 2

    def feed(
        self, chunk: bytes | bytearray, limit: int, end: int | None = None
    ) -> tuple[int, Sequence[str], int]:
        """Frame a chunk: return up to ``limit`` lines and the drops around them.

        A line that was being dropped when the chunk began ends before the lines
        handed out, so its count comes first; every other drop comes after them.

        Args:
            chunk: the next bytes of the stream (a reused buffer is fine: the
                framer copies what it keeps).
            limit: how many lines (pieces) the caller can use; 0 drops them all.
            end: how many bytes of ``chunk`` are data (default: all).

        Returns:
            ``(before, lines, after)``: the lines dropped before the decoded lines
            (without newline), those lines, and the lines dropped after them.
        """
        if end is None:
            end = len(chunk)
        if limit <= 0:
            return 0, [], self._drop(chunk, end)
        if self._bulk and self._skip < 0 and not self._cut:
            block = self._block(chunk, limit, end)
            if block is not None:
                return 0, block, 0
        out: list[str] = []
        first = chunk.find(b"\n", 0, end)
        if first < 0:
            return 0, out, self._grow(chunk[:end], out, limit)
        before = after = 0
        if self._skip >= 0:
            before = self._skipped_pieces(first)
        else:
            head = self._tail + chunk[:first] if self._tail else chunk[:first]
            after = 0 if (self._cut and not head) else self._emit(head, out, limit)
        self._tail, self._cut = b"", False
        last = chunk.rfind(b"\n", 0, end)
        if last > first:
            after += self._body(chunk, first + 1, last, limit, out)
        if last + 1 < end:
            after += self._grow(chunk[last + 1 : end], out, limit)
        return before, out, after

    def _block(self, chunk: bytes | bytearray, limit: int, end: int) -> LineBlock | None:
        """Frame the chunk's complete lines as one block; None when a line needs cutting.

        Only for a framer that is neither dropping nor in the middle of a cut
        line, and a chunk whose lines all fit in ``limit``: then the lines are
        exactly those of the line-by-line path (a newline always ends an
        invalid UTF-8 sequence, so one decode replaces what per-line ones would).
        """
        last = chunk.rfind(b"\n", 0, end)
        if last < 0 or end - last - 1 > self._max:
            return None
        first = chunk.find(b"\n", 0, last + 1)
        if len(self._tail) + first > self._max:
            return None
        window = self._window
        for start in range(first + 1, last - window + 1, window):
            if chunk.find(b"\n", start, start + window) < 0:
                return None
        count = chunk.count(b"\n", 0, last + 1)
        if count > limit:
            return None
        view = memoryview(chunk)
        data = b"".join((self._tail, view[:last])) if self._tail else view[:last]
        text = str(data, "utf-8", "replace")
        self._tail = bytes(view[last + 1 : end])
        return LineBlock(text, count)

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
