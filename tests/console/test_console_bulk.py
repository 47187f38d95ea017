"""The console prints the framer's chunks exactly as it would print their lines one by one.

Plain lines (prefixes; control characters escaped on a terminal, kept as written
elsewhere) and JSON objects, from chunks with partial lines, invalid UTF-8 and long
lines cut anywhere, to a text stream and to a UTF-8 byte stream.
"""

from __future__ import annotations

import io
import json

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import humanize
from supervisor.console import console as console_module
from supervisor.console.console import Console
from supervisor.console.view import Batch, Item, Lines, PlainView
from supervisor.events import OutputChunk
from supervisor.output.framing import ChunkFramer, decode_lines

_PIECES = st.sampled_from(
    [b"\n", b"\n", b"\n", b"\r\n", b"ok", b"\r", b"\x1b[31m", b"\x1b]0;t\x07", b"\x00", b"\t",
     b"\\", b'"', b"\xe2\x82\xac", b"\xe2\x82", b"\xff", b"\xc2\x85", b"\xe2\x80\xae", b"x" * 30]
)  # fmt: skip
_STREAMS = st.lists(st.lists(_PIECES, max_size=30).map(b"".join), min_size=1, max_size=8)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _framed(chunks: list[bytes], max_line_bytes: int) -> list[bytes]:
    """The chunks of whole lines a framer hands out (the last flushed)."""
    framer = ChunkFramer(max_line_bytes)
    out = [framer.feed(chunk, 1 << 30).data for chunk in chunks]
    return [*out, framer.flush(1 << 30).data]


def _printed(data: list[bytes], json_logs: bool, *, to: str) -> str:
    """What a plain (or JSON) view prints of chunks: to text, a terminal or UTF-8 bytes."""
    raw = io.BytesIO()
    text = _Terminal() if to == "terminal" else io.StringIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", newline="") if to == "bytes" else text
    view = PlainView(out, "n", json_logs)
    items: list[Item] = [(0.0, Lines("w:0", "stdout", chunk)) for chunk in data if chunk]
    view.show(Batch(list[Item](view.prepare(items))), (), final=False, timeout=-1)
    out.flush()
    return raw.getvalue().decode("utf-8", "replace") if to == "bytes" else text.getvalue()


@settings(max_examples=300, deadline=None)
@given(chunks=_STREAMS, max_line_bytes=st.integers(4, 40), json_logs=st.booleans())
def test_console_prints_chunks_exactly_like_lines(
    chunks: list[bytes], max_line_bytes: int, json_logs: bool
) -> None:
    data = _framed(chunks, max_line_bytes)
    lines = [line for chunk in data for line in decode_lines(chunk)]
    if json_logs:
        objects = [json.loads(line) for line in _printed(data, True, to="text").split("\n")[:-1]]
        assert [o["line"] for o in objects] == lines
        assert all(o["process"] == "w:0" for o in objects)
        assert _printed(data, True, to="bytes") == _printed(data, True, to="text")
        return
    assert _printed(data, False, to="text") == "".join(f"w:0 | {x}\n" for x in lines)
    # stdout to a file or pipe: the bytes the worker wrote, prefixed per line
    assert _printed(data, False, to="bytes") == _printed(data, False, to="text")
    escaped = "".join(f"w:0 | {humanize.printable(x)}\n" for x in lines)
    assert _printed(data, False, to="terminal") == escaped


async def test_console_chunk_beyond_the_share_is_cut_at_a_line_and_counted() -> None:
    """A chunk bigger than a process's share is printed in part, the rest reported dropped."""
    share = int(console_module.PLAIN_MAX_BYTES * console_module.SHARE)
    line = "x" * 999
    count = share // 1000 + 500
    data = f"{line}\n".encode() * count
    out = io.StringIO()
    console = Console(stream=out, live=False, mode="output")
    async with anyio.create_task_group() as tg:
        await tg.start(console.run)
        console.deliver(OutputChunk(process="w:0", stream="stdout", data=data))
        tg.cancel_scope.cancel()
    shown = out.getvalue().splitlines()
    assert shown[-1].startswith("w:0 [")
    assert shown[-1].endswith(" lines dropped]")
    dropped = int(shown[-1].split()[1][1:].replace(",", ""))
    assert all(text == f"w:0 | {line}" for text in shown[:-1])
    assert len(shown) - 1 == share // 1000
    assert len(shown) - 1 + dropped == count
