"""The framer's block path against its line-by-line path, byte for byte.

A chunk of short lines comes out as one ``LineBlock``; whatever the chunks (partial
lines, ``\\r``, invalid UTF-8, control bytes, long lines, boundaries anywhere), the
lines and drop counts must be exactly those of framing line by line.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.output.framing import LineBlock, LineFramer, joined

_PIECES = st.sampled_from(
    [b"\n", b"\n", b"\n", b"\r\n", b"a", b"line", b"\r", b"\x1b[31m", b"\x00", b"\t",
     b"\xe2\x82\xac", b"\xe2\x82", b"\xac", b"\xff", b"\xc3", b"\xa9", b"x" * 7, b"y" * 40,
     b"\xe2\x80\xae"]
)  # fmt: skip
_STREAMS = st.lists(st.lists(_PIECES, max_size=40).map(b"".join), min_size=1, max_size=12)


def _frame(framer: LineFramer, chunks: list[bytes], limits: list[int]) -> list[object]:
    """Everything a framer hands out: per chunk ``(before, lines, after)``, then the flush."""
    out: list[object] = []
    for i, chunk in enumerate(chunks):
        buf = bytearray(chunk + b"GARBAGE")  # a reused buffer: only ``end`` bytes are data
        before, lines, after = framer.feed(buf, limits[i % len(limits)], len(chunk))
        out.append((before, list(lines), after))
    out.append(framer.flush(limits[-1]))
    return out


@settings(max_examples=400, deadline=None)
@given(
    chunks=_STREAMS,
    max_line_bytes=st.integers(4, 48),
    limits=st.lists(st.integers(0, 30), min_size=1, max_size=5),
)
def test_framer_block_path_frames_exactly_like_line_by_line(
    chunks: list[bytes], max_line_bytes: int, limits: list[int]
) -> None:
    bulk = _frame(LineFramer(max_line_bytes), chunks, limits)
    reference = _frame(LineFramer(max_line_bytes, bulk=False), chunks, limits)
    assert bulk == reference


def test_framer_hands_out_a_chunk_of_short_lines_as_one_block() -> None:
    framer = LineFramer(64)
    before, lines, after = framer.feed(b"ab\xff\ncd\r\n\nef", 10)
    assert (before, after) == (0, 0)
    assert isinstance(lines, LineBlock)
    assert lines.text == "ab\ufffd\ncd\r\n"
    assert list(lines) == ["ab\ufffd", "cd\r", ""]
    assert (len(lines), lines.chars, lines[1], lines[-2:]) == (3, 6, "cd\r", ("cd\r", ""))
    assert joined(lines, " | ") == "ab\ufffd | cd\r | "
    assert framer.flush(1) == (["ef"], 0)


def test_framer_cuts_a_long_line_in_a_chunk_of_short_ones_like_line_by_line() -> None:
    chunk = b"short\n" + b"z" * 30 + b"\nend\n"
    bulk = LineFramer(8).feed(chunk, 100)
    assert not isinstance(bulk[1], LineBlock)  # a window with no newline: framed line by line
    assert bulk == LineFramer(8, bulk=False).feed(chunk, 100)
    assert list(bulk[1]) == ["short", "zzzzzzzz", "zzzzzzzz", "zzzzzzzz", "zzzzzz", "end"]


def test_line_block_compares_as_its_lines() -> None:
    block = LineBlock("a\nb", 2)
    assert block == ("a", "b")
    assert block == ["a", "b"]
    assert block == LineBlock("a\nb", 2)
    assert block != LineBlock("a\nc", 2)
    assert hash(block) == hash(("a", "b"))


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.text(alphabet="ab\u20ac", max_size=6), min_size=1, max_size=30),
    budget=st.integers(1, 80),
)
def test_line_block_head_takes_lines_while_the_chars_before_them_are_below_budget(
    lines: list[str], budget: int
) -> None:
    want: list[str] = []
    chars = 0
    for line in lines:
        if chars >= budget:
            break
        want.append(line)
        chars += len(line)
    head = LineBlock("\n".join(lines), len(lines)).head(budget)
    assert list(head) == want
    assert (len(head), head.chars) == (len(want), chars)
