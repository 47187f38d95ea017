"""The console prints a framer's line blocks byte for byte as it prints lines one by one.

Plain lines (prefixes, control characters escaped, CRLF endings) and JSON objects,
from chunks with partial lines, invalid UTF-8 and long lines cut anywhere.
"""

from __future__ import annotations

import io
import json

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.console import console as console_module
from supervisor.console.console import Console
from supervisor.console.view import Batch, Item, Lines, PlainView
from supervisor.events import OutputLines
from supervisor.output.framing import LineBlock, LineFramer

_PIECES = st.sampled_from(
    [b"\n", b"\n", b"\n", b"\r\n", b"ok", b"\r", b"\x1b[31m", b"\x1b]0;t\x07", b"\x00", b"\t",
     b"\\", b'"', b"\xe2\x82\xac", b"\xe2\x82", b"\xff", b"\xc2\x85", b"\xe2\x80\xae", b"x" * 30]
)  # fmt: skip
_STREAMS = st.lists(st.lists(_PIECES, max_size=30).map(b"".join), min_size=1, max_size=8)


def _printed(
    bulk: bool, chunks: list[bytes], max_line_bytes: int, json_logs: bool, *, binary: bool = False
) -> str:
    """What a plain (or JSON) view prints of the chunks, to a StringIO or a UTF-8 byte stream."""
    framer = LineFramer(max_line_bytes, bulk=bulk)
    raw = io.BytesIO()
    text = io.StringIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", newline="") if binary else text
    view = PlainView(out, "n", json_logs)
    items: list[Item] = []
    for chunk in chunks:
        _, lines, _ = framer.feed(chunk, 1000)
        if lines:
            items.append((0.0, Lines("w:0", "stdout", lines)))
    last, _ = framer.flush(1000)
    items.append((0.0, Lines("w:0", "stderr", last)))
    view.show(Batch(items), (), final=False, timeout=-1)
    out.flush()
    return raw.getvalue().decode() if binary else text.getvalue()


@settings(max_examples=300, deadline=None)
@given(chunks=_STREAMS, max_line_bytes=st.integers(4, 40), json_logs=st.booleans())
def test_console_prints_blocks_exactly_like_lines(
    chunks: list[bytes], max_line_bytes: int, json_logs: bool
) -> None:
    printed = _printed(True, chunks, max_line_bytes, json_logs)
    assert printed == _printed(False, chunks, max_line_bytes, json_logs)
    # stdout to a file or pipe: blocks of ASCII lines are prefixed as bytes
    assert printed == _printed(True, chunks, max_line_bytes, json_logs, binary=True)
    if json_logs:
        # split on newlines only: a raw U+0085 or U+2028 inside a line is valid JSON
        objects = [json.loads(line) for line in printed.split("\n")[:-1]]
        assert all(obj["process"] == "w:0" for obj in objects)


async def test_console_block_beyond_the_char_budget_is_cut_and_counted() -> None:
    """A block bigger than a process's share is printed in part, the rest reported dropped."""
    share = console_module.SHARE_CHARS
    line = "x" * 999
    count = share // 1000 + 500
    block = LineBlock("\n".join([line] * count), count)
    out = io.StringIO()
    console = Console(stream=out, live=False, mode="output")
    async with anyio.create_task_group() as tg:
        await tg.start(console.run)
        console.deliver(OutputLines(process="w:0", stream="stdout", lines=block))
        tg.cancel_scope.cancel()
    shown = out.getvalue().splitlines()
    assert shown[-1].startswith("w:0 [")
    assert shown[-1].endswith(" lines dropped]")
    dropped = int(shown[-1].split()[1][1:].replace(",", ""))
    assert all(text == f"w:0 | {line}" for text in shown[:-1])
    assert 0 < len(shown) - 1 < count
    assert len(shown) - 1 + dropped == count
