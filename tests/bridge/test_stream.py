"""Tests of the output stream: blocks per process, fair shares, bounds, fences, cut lines."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hypothesis import example, given, settings
from hypothesis import strategies as st

from supervisor.bridge.stream import Excerpt, OutputStream, neutralise, omitted_note
from supervisor.humanize import memory


def _data(*lines: str) -> bytes:
    """Whole lines as the pump hands them out."""
    return "".join(f"{line}\n" for line in lines).encode()


def _code_lines(content: str) -> list[str]:
    """The lines inside the code blocks of a message."""
    inside, found = False, []
    for line in content.splitlines():
        if line == "```":
            inside = not inside
        elif inside:
            found.append(line)
    return found


def test_stream_heads_each_block_with_its_process() -> None:
    stream = OutputStream()
    stream.add("web:0", _data("GET /", "GET /a"))
    stream.add("scraper:0", _data("page 1"))
    excerpt = stream.take()
    assert excerpt is not None
    assert excerpt.content == "▸ `web:0`\n```\nGET /\nGET /a\n```\n▸ `scraper:0`\n```\npage 1\n```"
    assert excerpt.counts == {"web:0": 2, "scraper:0": 1}
    assert stream.take() is None


def test_stream_keeps_every_line_in_order_across_messages() -> None:
    stream = OutputStream(max_chars=200)
    lines = [f"line {i:04d}" for i in range(100)]
    stream.add("w:0", _data(*lines))
    seen: list[str] = []
    while (excerpt := stream.take()) is not None:
        assert len(excerpt.content) <= 200
        seen.extend(_code_lines(excerpt.content))
    assert seen == lines


def _omitted(excerpt: Excerpt | None) -> str:
    assert excerpt is not None
    return _code_lines(excerpt.content)[-1]


def test_stream_counts_the_lines_it_omits_while_they_are_few() -> None:
    """Past the bound, a few omitted lines are counted exactly, also those the pump counted."""
    stream = OutputStream(max_chars=500, buffer_chars=100)
    stream.add("scraper:0", _data(*(f"{i:09d}" for i in range(50))))
    stream.add("scraper:0", _data(*["late"] * 7), omitted=3000, omitted_lines=60)
    excerpt = stream.take()
    assert excerpt is not None
    shown = _code_lines(excerpt.content)
    assert shown[:-1] == [f"{i:09d}" for i in range(10)]
    # The lines past the bound, the 7 late ones and the 60 the pump counted after them.
    assert shown[-1] == "... 107 lines of scraper:0 omitted (see /logs scraper)"
    assert shown[-1] == omitted_note("scraper:0", 40 + 7 + 60, 40 * 10 + 7 * 5 + 3000)
    assert excerpt.counts == {"scraper:0": 10}


def test_stream_says_one_line() -> None:
    stream = OutputStream(max_chars=500, buffer_chars=20)
    stream.add("w:0", _data("first line", "second line"))
    assert _omitted(stream.take()) == "... 1 line of w:0 omitted (see /logs w)"


def test_stream_counts_lines_trimmed_when_a_process_joins() -> None:
    stream = OutputStream(max_chars=2000, buffer_chars=200)
    stream.add("a:0", _data(*(f"a{i:04d}" for i in range(30))))  # 30 x 6 chars fit 200
    stream.add("b:0", _data("b"))  # a:0's share halves: its newest lines are omitted
    excerpt = stream.take()
    assert excerpt is not None
    shown = _code_lines(excerpt.content)
    kept = [line for line in shown if line.startswith("a0")]
    assert f"... {30 - len(kept)} lines of a:0 omitted (see /logs a)" in shown


def test_stream_estimates_a_flood_past_its_count_and_says_so() -> None:
    """Past ``exact_bytes``, omitted lines are estimated from the lines seen, said with
    "about" and the exact size: a flood costs no pass over every byte."""
    stream = OutputStream(max_chars=4000, buffer_chars=2000, exact_bytes=10_000)
    line = b"x" * 49 + b"\n"
    stream.add("scraper:0", line * 1000)  # 50 kB: counted (the first count may overshoot)
    assert stream.count_budget <= 0, "past exact_bytes, nothing more is counted"
    for _ in range(20):  # 1 MB, omitted by the pump, not counted
        stream.add("scraper:0", b"", omitted=len(line) * 1000, uncounted=len(line) * 1000)
    lines = 21_000 - 40  # 40 lines of 50 characters fit a 2,000-character share
    assert _omitted(stream.take()) == (
        f"... about {round(lines, -3):,} lines ({memory(lines * 50)}) of scraper:0 omitted "
        "(see /logs scraper)"
    )
    assert stream.count_budget == 10_000, "each message counts anew"


def test_stream_estimates_from_the_lines_it_saw_of_that_process() -> None:
    stream = OutputStream(max_chars=4000, buffer_chars=4000, exact_bytes=0)
    stream.add("short:0", b"s\n" * 10)
    stream.add("long:0", (b"L" * 99 + b"\n") * 10)
    stream.add("short:0", b"", omitted=2000, uncounted=2000)
    stream.add("long:0", b"", omitted=2000, uncounted=2000)
    excerpt = stream.take()
    assert excerpt is not None
    assert "... about 1,000 lines (2.0 KiB) of short:0 omitted" in excerpt.content
    assert "... about 20 lines (2.0 KiB) of long:0 omitted" in excerpt.content


def test_stream_without_a_line_seen_tells_the_size_only() -> None:
    stream = OutputStream(exact_bytes=0)
    stream.add("w:0", b"", omitted=3 << 20, uncounted=3 << 20)
    assert _omitted(stream.take()) == "... 3.0 MiB of w:0 omitted (see /logs w)"


def test_stream_gives_a_quiet_process_its_share_in_a_flood() -> None:
    stream = OutputStream(max_chars=600)
    stream.add("flood:0", _data(*["x" * 50] * 1000))
    stream.add("quiet:0", _data("Traceback: boom"))
    excerpt = stream.take()
    assert excerpt is not None
    assert "Traceback: boom" in excerpt.content
    assert len(excerpt.content) <= 600


def test_stream_puts_state_notes_first_and_marks_them() -> None:
    stream = OutputStream()
    stream.add("w:0", _data("out"))
    stream.add_note("`w:0` RUNNING → BACKOFF")
    excerpt = stream.take()
    assert excerpt is not None
    assert excerpt.has_notes
    assert excerpt.content.startswith("`w:0` RUNNING → BACKOFF\n▸ `w:0`")


def test_stream_neutralises_fences_and_mentions_stay_text() -> None:
    stream = OutputStream()
    stream.add("w:0", _data("```", "@everyone look", "``` rm -rf ```"))
    excerpt = stream.take()
    assert excerpt is not None
    assert excerpt.content.count("```") == 2
    assert _code_lines(excerpt.content)[1] == "@everyone look"


def test_neutralise_cuts_long_lines_saying_so() -> None:
    text = neutralise("y" * 1000, max_chars=20)
    assert text == "y" * 20 + "... (line cut: 1,000 characters)"


def test_neutralise_removes_escape_sequences() -> None:
    assert neutralise("\x1b[31mred\x1b[0m") == "red"


def test_stream_shows_a_line_longer_than_a_share() -> None:
    stream = OutputStream(max_chars=400, max_line_chars=300)
    for index in range(5):
        stream.add(f"p:{index}", _data("z" * 300))
    taken = 0
    while (excerpt := stream.take()) is not None:
        taken += sum(excerpt.counts.values())
    assert taken == 5


def test_stream_gives_what_the_shares_leave_to_a_process_with_more() -> None:
    """A traceback of 30 lines among nine processes printing a line each: its block had a
    tenth of the message, so most of it waited for a second message, a second later,
    while the first was half empty."""
    stream = OutputStream()
    stream.add("p:0", _data(*[f"  File x.py, line {i:04d}" for i in range(30)]))
    for index in range(1, 10):
        stream.add(f"p:{index}", _data(f"tick {index}"))
    excerpt = stream.take()
    assert excerpt is not None
    assert excerpt.counts == {f"p:{i}": 30 if i == 0 else 1 for i in range(10)}
    assert _code_lines(excerpt.content)[:30] == [f"  File x.py, line {i:04d}" for i in range(30)]
    assert stream.take() is None


def test_stream_shares_its_bound_between_flooding_processes() -> None:
    stream = OutputStream(max_chars=1000, buffer_chars=1000)
    for index in range(10):
        stream.add(f"p:{index}", _data(*["y" * 19] * 100))
    assert stream.waiting_chars <= 1000
    messages = []
    while (excerpt := stream.take()) is not None:
        messages.append(excerpt.content)
    assert len(messages) <= 3, "the stream stays close behind the output"
    assert sum(m.count("omitted (see /logs p)") for m in messages) == 10


def test_stream_tells_a_flood_in_one_message() -> None:
    """Once lines are omitted, what waits is cut to one message: its head lines and one
    note per process for all the rest, counted, and nothing left for later messages."""
    stream = OutputStream()  # the defaults: a buffer of four messages
    for index in range(10):
        stream.add(f"w:{index}", _data(*(f"{index} line {n:05d}" for n in range(500))))
    excerpt = stream.take()
    assert excerpt is not None
    assert len(excerpt.content) <= 2000
    assert stream.take() is None, "nothing of the flood waits for a second message"
    for index in range(10):
        shown = excerpt.counts[f"w:{index}"]
        assert shown >= 1
        block = excerpt.content.split(f"▸ `w:{index}`\n```\n")[1].split("\n```")[0]
        assert block.splitlines()[:shown] == [f"{index} line {n:05d}" for n in range(shown)]
        assert f"... {500 - shown} lines of w:{index} omitted (see /logs w)" in block


def test_stream_in_a_flood_leaves_a_process_what_the_others_notes_leave() -> None:
    """In a burst from idle the stream is full after the first process's read: the others
    only have an omitted note each, and its lines keep the rest of the message."""
    stream = OutputStream()
    stream.add("w:0", _data(*(f"line {n:05d}" for n in range(5000))))
    for index in range(1, 10):
        stream.add(f"w:{index}", b"", omitted=1_000_000, uncounted=1_000_000)
    excerpt = stream.take()
    assert excerpt is not None
    assert stream.take() is None
    assert excerpt.counts["w:0"] >= 50, "not a tenth of the message (8 lines)"
    assert 1200 < len(excerpt.content) <= 2000
    assert sum(excerpt.content.count(f"of w:{index} omitted") for index in range(10)) == 10


def test_stream_in_a_flood_shows_what_came_since_the_last_message() -> None:
    """A message in a steady flood shows lines printed after the one before, not lines
    kept from seconds before."""
    stream = OutputStream()
    for second in range(3):
        stream.add("w:0", _data(*(f"{second}:{n:04d}" for n in range(2000))))
        excerpt = stream.take()
        assert excerpt is not None
        shown = _code_lines(excerpt.content)
        assert shown[0] == f"{second}:0000"
        assert shown[-1] == f"... {2000 - len(shown) + 1:,} lines of w:0 omitted (see /logs w)"
        assert stream.take() is None


def test_stream_shows_a_burst_that_fits_its_buffer_whole() -> None:
    """Lines that fit the buffer (four messages' worth) are all shown, over messages."""
    stream = OutputStream()
    lines = [f"Traceback line {n:03d} " + "x" * 40 for n in range(100)]  # 6,300 characters
    stream.add("w:0", _data(*lines))
    seen: list[str] = []
    messages = 0
    while (excerpt := stream.take()) is not None:
        messages += 1
        seen.extend(_code_lines(excerpt.content))
    assert seen == lines
    assert messages == 4


_ASCII = st.one_of(
    st.text(alphabet="abcxyz 0123456789", max_size=60),
    st.sampled_from([59, 60, 61, 62, 339, 340, 341, 342]).map(lambda n: "p" * n),  # at the cut
    st.sampled_from([19, 20, 21, 22, 299, 300, 301, 302]).map(lambda n: "c" * n),  # cut shown
    st.integers(343, 1500).map(lambda n: "q" * n),  # long: cut when shown
    st.tuples(  # one control byte, escape or fence among plain text
        st.text(alphabet="ab ", max_size=20),
        st.sampled_from(["\x00", "\t", "\r", "\x1b", "\x1b[3m", "\x7f", "`", "``"]),
        st.text(alphabet="ab ", max_size=20),
    ).map("".join),
).map(str.encode)
_ANY = st.one_of(
    _ASCII,
    st.text(alphabet="aé€🙂`\t\x1b", max_size=400).map(str.encode),  # multi-byte, fences
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),  # invalid UTF-8
)
_ADD = st.tuples(
    st.integers(0, 11),  # which process
    st.one_of(st.lists(_ASCII, max_size=200), st.lists(_ANY, max_size=200)),  # its lines
    st.sampled_from([0, 0, 0, 5, 999, 300_000]),  # bytes omitted right after
    st.booleans(),  # whether those were counted
)
_STEP = st.one_of(_ADD, st.just("take"), st.just("note"))


def _decoded(stream: OutputStream) -> OutputStream:
    """``stream`` keeping no line as raw bytes: each decoded and costed when it comes."""
    stream._long_line = re.compile(rb"")  # matches anything: no chunk is plain
    return stream


def _outcome(stream: OutputStream) -> tuple[int, bool, int, bool]:
    return stream.waiting_chars, stream.is_full, stream.count_budget, stream.has_notes


@settings(max_examples=300, deadline=None)
@example(steps=[(0, [b"a", b"p" * 341], 0, False)], limits=(2000, 8000, 300), exact=0)
@example(steps=[(0, [b"p" * 341, b"a"], 0, False)], limits=(2000, 8000, 300), exact=0)
@example(  # the line left out is shorter shown (its escapes removed): it fits after all
    steps=[(0, [b"a" * 210, b"\x1b[3m" * 20 + b"b"], 0, False)], limits=(300, 900, 300), exact=0
)
@example(  # what a block left of a plain chunk is all cut when eleven more processes join
    steps=[(0, [b"a" * 100] * 8, 0, False), "take", *[(i, [b"b"], 0, False) for i in range(1, 12)]],
    limits=(300, 900, 300),
    exact=0,
)
@given(
    steps=st.lists(_STEP, max_size=40),
    limits=st.sampled_from([(2000, 8000, 300), (300, 900, 300), (500, 2000, 20)]),
    exact=st.sampled_from([256 * 1024, 1000, 0]),
)
def test_stream_shows_the_same_whether_lines_wait_as_bytes_or_decoded(
    steps: list[tuple[int, list[bytes], int, bool] | str],
    limits: tuple[int, int, int],
    exact: int,
) -> None:
    """Lines kept raw until shown (plain ones), and shown straight from the raw bytes
    while none needs neutralising, change nothing any message shows, however processes
    join, flood, or write long, multi-byte, invalid, escaped or fenced lines."""
    max_chars, buffer_chars, max_line = limits
    streams = [
        make(
            OutputStream(
                max_chars=max_chars,
                buffer_chars=buffer_chars,
                max_line_chars=max_line,
                exact_bytes=exact,
            )
        )
        for make in (lambda s: s, _decoded)
    ]
    fast, slow = streams
    for step in [*steps, "take", "take", "take", "take", "take", "take"]:
        if step == "take":
            assert fast.take() == slow.take()
        elif step == "note":
            for stream in streams:
                stream.add_note("`w:0` RUNNING → EXITED")
        else:
            assert not isinstance(step, str)
            process, lines, omitted, counted = step
            data = b"".join(line + b"\n" for line in lines)
            for stream in streams:
                stream.add(
                    f"w:{process}",
                    data,
                    omitted,
                    omitted // 50 if counted else 0,
                    0 if counted else omitted,
                )
        assert _outcome(fast) == _outcome(slow)


@dataclass(frozen=True)
class _Sized:
    """A tally taken: bytes of a process omitted by size only."""

    process: int
    size: int


_SIZED = st.builds(_Sized, st.integers(0, 11), st.sampled_from([1, 50, 4096, 300_000]))


@settings(max_examples=200, deadline=None)
@example(
    steps=[(0, [b"a" * 40] * 60, 0, False), _Sized(0, 50), _Sized(1, 50), "take", _Sized(0, 50)],
    exact=1000,
)
@given(
    steps=st.lists(st.one_of(_STEP, _SIZED), max_size=40),
    exact=st.sampled_from([256 * 1024, 1000, 0]),
)
def test_stream_takes_a_sized_drop_alike_through_omit_or_add(
    steps: list[tuple[int, list[bytes], int, bool] | _Sized | str], exact: int
) -> None:
    """``omit`` (a flood's reads sized only, in a few steps) leaves the stream as ``add``
    with no line and every byte uncounted does, whatever came before."""
    fast, slow = (OutputStream(max_chars=500, buffer_chars=2000, exact_bytes=exact) for _ in "ab")
    for step in [*steps, "take", "take", "take", "take"]:
        if step == "take":
            assert fast.take() == slow.take()
        elif step == "note":
            for stream in (fast, slow):
                stream.add_note("`w:0` RUNNING → EXITED")
        elif isinstance(step, _Sized):
            fast.omit(f"w:{step.process}", step.size)
            slow.add(f"w:{step.process}", b"", step.size, 0, step.size)
        else:
            assert not isinstance(step, str)
            process, lines, omitted, counted = step
            data = b"".join(line + b"\n" for line in lines)
            for stream in (fast, slow):
                stream.add(f"w:{process}", data, omitted, 0, 0 if counted else omitted)
        assert _outcome(fast) == _outcome(slow)
