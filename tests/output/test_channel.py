"""The channel's framing and decoding: every line a message or a count, never an error."""

from __future__ import annotations

import json
import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.output.channel import MessageFramer, Sender, make_channel, read_some

MAX = 1024


def _feed(framer: MessageFramer, chunks: list[bytes]) -> list[dict[str, object]]:
    out = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    framer.finish()
    return out


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def test_framer_counts_each_kind_of_bad_line_and_keeps_the_good_ones() -> None:
    framer = MessageFramer("w:0", max_bytes=MAX)
    data = (
        b'{"type":"a"}\n'
        b"not json\n"
        b"\xff\xfe\n"
        b"[1]\n"
        b'{"type": 1}\n' + b"x" * (MAX + 10) + b'\n{"type":"b"}\n\n' + b'{"type":"cut'
    )
    assert [m["type"] for m in _feed(framer, [data])] == ["a", "b"]
    stats = framer.stats
    assert (stats.not_json, stats.not_utf8, stats.not_a_message, stats.oversized) == (2, 1, 2, 1)


def test_framer_drops_an_oversized_line_fed_in_pieces_and_resyncs() -> None:
    framer = MessageFramer("w:0", max_bytes=MAX)
    pieces = [b"y" * 600, b"y" * 600, b"y" * 600 + b'\n{"type":"ok"}\n']
    assert [m["type"] for m in _feed(framer, pieces)] == ["ok"]
    assert framer.stats.oversized == 1


messages = st.dictionaries(
    st.text(max_size=8), st.none() | st.integers() | st.text(max_size=20), max_size=4
).map(lambda d: {**d, "type": "t"})


@settings(max_examples=300, deadline=None)
@given(
    good=st.lists(messages, max_size=8),
    garbage=st.lists(st.binary(max_size=3 * MAX), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=20 * MAX), max_size=12),
)
def test_framer_fuzzed_never_raises_and_finds_every_message_between_garbage(
    good: list[dict[str, object]], garbage: list[bytes], cuts: list[int]
) -> None:
    """Garbage lines (any bytes, newlines removed) between good ones, cut anywhere."""
    lines = [json.dumps(m).encode() for m in good]
    junk = [g.replace(b"\n", b"") for g in garbage]
    mixed = b"".join(
        part + b"\n"
        for i in range(max(len(lines), len(junk)))
        for part in (junk[i : i + 1] + lines[i : i + 1])
    )
    framer = MessageFramer("w:0", max_bytes=MAX)
    found = _feed(framer, _cut(mixed, cuts))
    expected = [m for line in mixed.split(b"\n")[:-1] if (m := _oracle(line)) is not None]
    assert found == expected
    assert all(m in found for m in good)
    refused = [line for line in mixed.split(b"\n")[:-1] if line.strip() and _oracle(line) is None]
    assert framer.stats.total() == len(refused)


def _oracle(line: bytes) -> dict[str, object] | None:
    """What one whole line is, decided the simple way."""
    if len(line) + 1 > MAX:
        return None
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) and isinstance(value.get("type"), str) else None


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=8 * MAX), cuts=st.lists(st.integers(0, 8 * MAX), max_size=10))
def test_framer_fuzzed_is_the_same_whatever_the_chunks(data: bytes, cuts: list[int]) -> None:
    whole = MessageFramer("w:0", max_bytes=MAX)
    pieces = MessageFramer("w:0", max_bytes=MAX)
    assert _feed(whole, [data]) == _feed(pieces, _cut(data, cuts))
    assert whole.stats == pieces.stats


def test_read_some_reads_in_bulk_and_sees_eof() -> None:
    ours, theirs_fd = make_channel()
    theirs = socket.socket(fileno=theirs_fd)
    with ours, theirs:
        theirs.sendall(b'{"type":"a"}\n' * 1000)
        framer = MessageFramer("w:0")
        messages, eof = read_some(ours, framer)
        assert (len(messages), eof) == (1000, False)
        theirs.close()
        assert read_some(ours, framer) == ([], True)


def test_sender_keeps_lines_whole_when_the_worker_never_reads() -> None:
    ours, theirs_fd = make_channel()
    theirs = socket.socket(fileno=theirs_fd)
    with ours, theirs:
        sender = Sender(ours, "w:0")
        sent = [sender.send({"type": "answer", "id": i, "answer": "x" * 1000}) for i in range(2000)]
        assert sent[0]
        assert not all(sent)  # the socket and the bounded rest are full: lines dropped
        assert sender.dropped == sent.count(False)
        theirs.setblocking(False)
        received = b""
        while True:
            try:
                chunk = theirs.recv(1 << 20)
            except BlockingIOError:
                break
            received += chunk
        # Whatever arrived is whole lines of JSON (the last maybe still in the rest).
        lines = received.split(b"\n")
        assert all(json.loads(line)["type"] == "answer" for line in lines[:-1])
