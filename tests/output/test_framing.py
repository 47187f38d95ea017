"""The chunk framer against a plain reference: split on newlines, cut long lines, in bytes.

Whatever the chunks (partial lines, ``\\r``, invalid UTF-8, control bytes, long lines,
boundaries anywhere, a reused buffer), the framer hands out exactly the reference's lines,
as whole lines of raw bytes; with little room, whole lines in order and exact drop counts.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.output.framing import ChunkFramer, cut_at_line, decode_lines, last_lines

_PIECES = st.sampled_from(
    [b"\n", b"\n", b"\n", b"\r\n", b"a", b"line", b"\r", b"\x1b[31m", b"\x00", b"\t",
     b"\xe2\x82\xac", b"\xe2\x82", b"\xac", b"\xff", b"\xc3", b"\xa9", b"x" * 7, b"y" * 40,
     b"\xe2\x80\xae"]
)  # fmt: skip
_STREAMS = st.lists(st.lists(_PIECES, max_size=40).map(b"".join), min_size=1, max_size=12)


def _reference(data: bytes, size: int) -> list[bytes]:
    """Lines of ``data`` (the last one even without a newline), long ones cut in pieces."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    pieces: list[bytes] = []
    for line in lines:
        start = 0
        while len(line) - start > size:
            cut = start + size
            while cut > start + size - 3 and line[cut] & 0xC0 == 0x80:
                cut -= 1
            pieces.append(line[start:cut])
            start = cut
        pieces.append(line[start:])
    return pieces


def _frame(
    framer: ChunkFramer, chunks: list[bytes], rooms: list[int]
) -> tuple[list[bytes], int, int]:
    """Every line handed out, the lines dropped and their bytes, chunk by chunk then flushed."""
    lines: list[bytes] = []
    dropped = dropped_bytes = 0
    for i, chunk in enumerate(chunks):
        buf = bytearray(chunk + b"GARBAGE")  # a reused buffer: only ``end`` bytes are data
        framed = framer.feed(buf, rooms[i % len(rooms)], end=len(chunk), count=True)
        assert framed.data.endswith(b"\n") or not framed.data
        lines += framed.data.split(b"\n")[:-1]
        dropped += framed.dropped_lines
        dropped_bytes += framed.dropped_bytes
    last = framer.flush(rooms[-1], count=True)
    lines += last.data.split(b"\n")[:-1]
    return lines, dropped + last.dropped_lines, dropped_bytes + last.dropped_bytes


@settings(max_examples=400, deadline=None)
@given(chunks=_STREAMS, max_line_bytes=st.integers(4, 48))
def test_framer_hands_out_the_reference_lines_for_any_chunking(
    chunks: list[bytes], max_line_bytes: int
) -> None:
    lines, dropped, _ = _frame(ChunkFramer(max_line_bytes), chunks, [1 << 30])
    assert (lines, dropped) == (_reference(b"".join(chunks), max_line_bytes), 0)
    assert all(len(line) <= max_line_bytes for line in lines)


@settings(max_examples=400, deadline=None)
@given(
    chunks=_STREAMS,
    max_line_bytes=st.integers(4, 48),
    rooms=st.lists(st.integers(0, 120), min_size=1, max_size=5),
)
def test_framer_with_little_room_gives_whole_lines_in_order_and_counts_the_rest(
    chunks: list[bytes], max_line_bytes: int, rooms: list[int]
) -> None:
    lines, dropped, dropped_bytes = _frame(ChunkFramer(max_line_bytes), chunks, rooms)
    reference = _reference(b"".join(chunks), max_line_bytes)
    assert len(lines) + dropped == len(reference)
    assert sum(len(x) + 1 for x in lines) + dropped_bytes == sum(len(x) + 1 for x in reference)
    rest = iter(reference)
    assert all(line in rest for line in lines)  # a subsequence: in order, none made up


@settings(max_examples=400, deadline=None)
@given(
    chunks=_STREAMS,
    max_line_bytes=st.integers(4, 48),
    rooms=st.lists(st.integers(0, 120), min_size=1, max_size=5),
)
def test_framer_skip_drops_what_a_feed_without_room_drops(
    chunks: list[bytes], max_line_bytes: int, rooms: list[int]
) -> None:
    """``skip`` (a full consumer's cheap path) leaves the framing as ``feed`` with no room
    does: the same lines after it, the same bytes dropped (long lines: their own bytes)."""
    fed, skipped = ChunkFramer(max_line_bytes), ChunkFramer(max_line_bytes)
    long = any(len(line) > max_line_bytes for line in b"".join(chunks).split(b"\n"))
    for i, chunk in enumerate(chunks):
        room = rooms[i % len(rooms)]
        buf = bytearray(chunk + b"GARBAGE\n")
        want = fed.feed(buf, room, end=len(chunk))
        if room:
            assert skipped.feed(buf, room, end=len(chunk)) == want
        elif long:
            assert skipped.skip(buf, len(chunk)) <= want.dropped_bytes
        else:
            assert skipped.skip(buf, len(chunk)) == want.dropped_bytes
    assert skipped.flush(1 << 30) == fed.flush(1 << 30)


def test_framer_keeps_memory_bounded_without_newlines() -> None:
    framer = ChunkFramer(1000)
    total = 0
    for _ in range(100):
        pieces = framer.feed(b"q" * 12345, 1 << 30).data.split(b"\n")[:-1]
        assert all(len(p) <= 1000 for p in pieces)
        total += sum(map(len, pieces))
    last = framer.flush(1 << 30).data
    assert total + len(last) - 1 == 100 * 12345


def test_framer_hands_out_a_line_that_began_while_the_consumer_was_full() -> None:
    framer = ChunkFramer(100)
    assert framer.feed(b"one\ntw", 4).data == b"one\n"
    full = framer.feed(b"o\nthr", 0, count=True)  # "two" dropped, "thr..." in progress
    assert (full.data, full.dropped_lines, full.dropped_bytes) == (b"", 1, 4)
    assert framer.feed(b"ee\nfour\nfi", 6).data == b"three\n"
    assert framer.flush(1 << 30).data == b"fi\n"


def test_framer_discard_resyncs_at_the_next_newline_and_counts_nothing() -> None:
    framer = ChunkFramer(100)
    framer.discard(b"skipped\nskipped too\npart")
    framer.discard(bytearray(b"ial still skipped GARBAGE"), 17)
    framed = framer.feed(b" end\nwhole\n", 100, count=True)
    assert (framed.data, framed.dropped_lines, framed.dropped_bytes) == (b"whole\n", 0, 0)


def test_framer_reads_only_up_to_end_of_a_reused_buffer() -> None:
    buf = bytearray(b"ab\ncd\nGARBAGE\n")
    framer = ChunkFramer(100)
    assert framer.feed(buf, 10, end=5).data == b"ab\n"
    buf[:] = b"e\nMORE GARBAGE\n"
    assert framer.feed(buf, 10, end=2).data == b"cde\n"


def test_framer_rejects_a_tiny_max() -> None:
    with pytest.raises(ValueError, match="max_line_bytes must be >= 4"):
        ChunkFramer(3)


def test_cut_at_line_and_last_lines_find_whole_lines() -> None:
    data = b"ab\ncde\nf\n"
    assert [cut_at_line(data, room) for room in (0, 2, 3, 6, 7, 9, 99)] == [0, 0, 3, 3, 7, 9, 9]
    assert [last_lines(data, n) for n in (1, 2, 3, 4)] == [7, 3, 0, 0]
    assert decode_lines(data[last_lines(data, 2) :]) == ["cde", "f"]
    assert decode_lines(b"\xff ok\n") == ["\ufffd ok"]


@settings(max_examples=400, deadline=None)
@given(
    chunks=_STREAMS,
    room=st.integers(0, 120),
    limit=st.integers(0, 200),
)
def test_framer_counts_the_dropped_lines_within_the_bytes_asked_only(
    chunks: list[bytes], room: int, limit: int
) -> None:
    """A bounded count (the relay's after each message) counts exactly the lines that
    end within the first ``count_bytes`` of the drop, and says how many bytes past
    them it did not count."""
    framer = ChunkFramer(1 << 20)  # no line is cut here
    partial = b""  # the stream's line in progress
    for chunk in chunks:
        framed = framer.feed(chunk, room, count=True, count_bytes=limit)
        end = chunk.rfind(b"\n") + 1
        whole, partial = (partial + chunk[:end], chunk[end:]) if end else (b"", partial + chunk)
        assert whole.startswith(framed.data)
        drop = whole[len(framed.data) :]
        counted = framed.dropped_bytes - framed.uncounted_bytes
        assert framed.dropped_bytes == len(drop)
        assert 0 <= counted <= limit
        assert framed.dropped_lines == drop[:counted].count(b"\n")
        assert drop[:counted].endswith(b"\n") or not counted
        assert b"\n" not in drop[counted:limit]  # no line that ends within it is left


def test_framer_says_every_dropped_byte_uncounted_when_no_count_is_asked() -> None:
    framed = ChunkFramer(100).feed(b"kept\ndropped\nand this\n", 5)
    assert (framed.data, framed.dropped_lines, framed.uncounted_bytes) == (b"kept\n", 0, 17)
