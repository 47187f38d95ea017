"""Tests of the output stream: blocks per process, fair shares, bounds, fences, cut lines."""

from __future__ import annotations

from supervisor.bridge.stream import OutputStream, neutralise, omitted_note


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


def test_stream_sizes_output_past_its_bound_as_omitted() -> None:
    """Past the bound, output is told by its size: no pass over its bytes to count lines."""
    stream = OutputStream(max_chars=500, buffer_chars=100)
    stream.add("scraper:0", _data(*(f"{i:09d}" for i in range(50))))
    stream.add("scraper:0", _data(*["late"] * 7), omitted=3000)
    excerpt = stream.take()
    assert excerpt is not None
    shown = _code_lines(excerpt.content)
    assert shown[:-1] == [f"{i:09d}" for i in range(10)]
    omitted = 40 * 10 + 7 * 5 + 3000  # the lines past the bound and the bytes lost after them
    assert shown[-1] == omitted_note("scraper:0", omitted)
    assert shown[-1] == "... 3.4 KiB of scraper:0 omitted (see /logs scraper)"
    assert excerpt.counts == {"scraper:0": 10}


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
