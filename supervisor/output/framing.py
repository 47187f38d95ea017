"""Framing bytes into decoded lines in bulk, with bounded memory whatever a process prints.

Long lines are cut into pieces and invalid UTF-8 is replaced; pipes and log files share it, so
lines look the same live and from ``tail``.
"""

from __future__ import annotations


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
    ) -> tuple[int, list[str], int]:
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
