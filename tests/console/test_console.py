"""Tests of the console of ``dsup run``: plain lines, JSON lines, filters, back-pressure, live.

Streams are real: a StringIO for formatting, an OS pipe nobody reads for a stuck
terminal, a writer that blocks on an event for precise back-pressure checks, and a
real pseudo-terminal for the live table.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import humanize
from supervisor.console import console as console_module
from supervisor.console import layout as layout_module
from supervisor.console import view as view_module
from supervisor.console.console import LIVE_MAX_BYTES, PLAIN_MAX_BYTES, Console
from supervisor.console.layout import Entry, fair_tail, on_screen
from supervisor.events import OrphansCleaned, OutputChunk, ProcessState, StateChanged
from tests import _console
from tests._console import PtyRun
from tests._e2e import write_config
from tests._wait import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from supervisor.events import Event

WORKERS = Path(__file__).resolve().parents[1] / "workers"

_PLAIN_LINE = re.compile(r"^(?P<process>\S+) (?P<mark>[|!]) (?P<text>.*)$")
_STATE_LINE = re.compile(
    r"^\d\d:\d\d:\d\d (?P<process>\S+) (?P<old>[A-Z]+) -> (?P<new>[A-Z]+)(?P<rest>.*)$"
)


def _changed(
    process: str = "scraper:0",
    old: ProcessState = ProcessState.STARTING,
    new: ProcessState = ProcessState.RUNNING,
    **extra: object,
) -> StateChanged:
    fields: dict[str, object] = {"pid": 1234, "at": 1_700_000_000.0, **extra}
    return StateChanged(
        process=process,
        program=process.split(":")[0],
        old=old,
        new=new,
        **fields,  # type: ignore[arg-type]
    )


def _lines(*text: str, process: str = "scraper:0", stderr: bool = False) -> OutputChunk:
    data = "".join(f"{line}\n" for line in text).encode()
    return OutputChunk(process=process, stream="stderr" if stderr else "stdout", data=data)


def _dropped(count: int, process: str = "scraper:0") -> OutputChunk:
    """Lines the pump could not hand over (of 10 bytes each)."""
    return OutputChunk(
        process=process, stream="stdout", data=b"", dropped=count, dropped_bytes=10 * count
    )


async def _written(console: Console, stream: io.StringIO, events: Iterable[Event] = ()) -> str:
    """Deliver events to a running console, cancel it, return what it wrote."""
    async with anyio.create_task_group() as tg:
        await tg.start(console.run)
        for event in events:
            console.deliver(event)
        tg.cancel_scope.cancel()  # the final flush writes what is pending
    return stream.getvalue()


async def _shown(console: Console, stream: io.StringIO, events: Iterable[Event]) -> list[str]:
    return (await _written(console, stream, events)).splitlines()


async def test_console_plain_state_change_line_has_time_names_states_and_details() -> None:
    out = io.StringIO()
    console = Console(stream=out, live=False)
    shown = await _shown(
        console,
        out,
        [
            _changed(),
            _changed(
                old=ProcessState.RUNNING, new=ProcessState.BACKOFF, exit_code=3, reason="crashed"
            ),
            _changed(old=ProcessState.STOPPING, new=ProcessState.STOPPED, exit_signal=9),
        ],
    )
    matches = [_STATE_LINE.match(line) for line in shown]
    assert all(matches), shown
    got = [(m["process"], m["old"], m["new"]) for m in matches if m]
    assert got == [
        ("scraper:0", "STARTING", "RUNNING"),
        ("scraper:0", "RUNNING", "BACKOFF"),
        ("scraper:0", "STOPPING", "STOPPED"),
    ]
    assert "1234" in shown[0]
    assert "3" in shown[1].split("BACKOFF", 1)[1]
    assert "crashed" in shown[1]
    assert "SIGKILL" in shown[2]


async def test_console_plain_output_lines_are_prefixed_and_stderr_is_marked() -> None:
    out = io.StringIO()
    console = Console(stream=out, live=False)
    shown = await _shown(
        console,
        out,
        [_lines("one", "two"), _lines("bad thing", stderr=True), _lines("x", process="b:1")],
    )
    parsed = [m.group("process", "mark", "text") for m in map(_PLAIN_LINE.match, shown) if m]
    assert len(parsed) == 4, shown
    assert parsed[:2] == [("scraper:0", "|", "one"), ("scraper:0", "|", "two")]
    assert parsed[2][0] == "scraper:0"
    assert parsed[2][2] == "bad thing"
    assert parsed[2][1] != parsed[0][1]
    assert parsed[3] == ("b:1", "|", "x")


async def test_console_plain_escapes_control_characters_only_for_a_terminal() -> None:
    """A terminal never gets a worker's escape sequence; a file or pipe gets its bytes.

    To a file or pipe, the plain view writes what the log file holds (as ``docker
    logs`` does); JSON keeps the raw line, escaped as JSON.
    """
    garbage = "\x1b[31mRED\x1b[0m\x1b]0;title\x07\r\rX\x08\x08"
    tty = _TtyLike()
    shown = await _shown(Console(stream=tty, live=False), tty, [_lines(garbage, "ok\tok")])
    assert shown == ["scraper:0 | RED\\x0d\\x0dX\\x08\\x08", "scraper:0 | ok\tok"]
    out = io.StringIO()
    written = await _written(Console(stream=out, live=False), out, [_lines(garbage, "ok\tok")])
    assert written == f"scraper:0 | {garbage}\nscraper:0 | ok\tok\n"
    out = io.StringIO()
    written = await _written(Console(stream=out, json_logs=True), out, [_lines(garbage)])
    assert json.loads(written)["line"] == garbage


_LINE_TEXT = st.text(
    st.characters(codec="utf-8", exclude_characters="\n")
    | st.sampled_from("\\n\t\x1b\r\u202e\x85"),
    max_size=12,
)


def _rendered(view: view_module.PlainView, item: view_module.Lines) -> str:
    ((_, rendered),) = view.prepare([(0.0, item)])
    assert isinstance(rendered, view_module.Rendered)
    return b"".join(rendered.buffers).decode()


@given(lines=st.lists(_LINE_TEXT, min_size=1, max_size=6))
@settings(max_examples=300, deadline=None)
def test_console_plain_and_json_lines_in_bulk_read_as_line_by_line(lines: list[str]) -> None:
    """A batch formatted in one replace reads exactly as each line formatted alone."""
    data = "".join(f"{line}\n" for line in lines).encode()
    item = view_module.Lines("p:0", "stdout", data)
    on_tty = _rendered(view_module.PlainView(_TtyLike(), "n", False), item)
    assert on_tty == "".join(f"p:0 | {humanize.printable(line)}\n" for line in lines)
    raw = _rendered(view_module.PlainView(io.StringIO(), "n", False), item)
    assert raw == "".join(f"p:0 | {line}\n" for line in lines)
    json_lines = _rendered(view_module.PlainView(io.StringIO(), "n", True), item)
    objs = [json.loads(x) for x in json_lines.split("\n")[:-1]]
    assert [o["line"] for o in objs] == lines
    assert all(o["process"] == "p:0" and o["type"] == "output" for o in objs)


async def test_console_events_delivered_before_run_are_written() -> None:
    out = io.StringIO()
    console = Console(stream=out, live=False)
    console.deliver(OrphansCleaned(pids=(11, 12), reason="startup"))
    console.deliver(_lines("early"))
    shown = await _shown(console, out, [])
    assert len(shown) == 2
    assert "11" in shown[0]
    assert "startup" in shown[0]
    assert shown[1].endswith("early")


async def test_console_json_logs_one_object_per_event_and_line() -> None:
    out = io.StringIO()
    console = Console(stream=out, json_logs=True, live=True, node="n1")  # JSON wins over live
    shown = await _shown(
        console,
        out,
        [
            _changed(exit_code=0, reason="done"),
            _lines("a", 'b {"json"} \\ é', stderr=True),
            OrphansCleaned(pids=(7,), reason="sweep"),
        ],
    )
    objs = [json.loads(line) for line in shown]
    assert [o["type"] for o in objs] == ["state", "output", "output", "orphans_cleaned"]
    assert all(o["node"] == "n1" and "time" in o for o in objs)
    state = objs[0]
    assert (state["process"], state["old"], state["new"]) == ("scraper:0", "STARTING", "RUNNING")
    assert (state["pid"], state["exit_code"], state["reason"]) == (1234, 0, "done")
    assert [(o["process"], o["stream"], o["line"]) for o in objs[1:3]] == [
        ("scraper:0", "stderr", "a"),
        ("scraper:0", "stderr", 'b {"json"} \\ é'),
    ]
    assert objs[3]["pids"] == [7]


async def test_console_quiet_shows_state_changes_only_and_takes_no_lines() -> None:
    out = io.StringIO()
    console = Console(stream=out, live=False, mode="quiet")
    assert console.capacity("scraper:0") < 0  # no lines, no drop counts wanted
    shown = await _shown(console, out, [_lines("hidden"), _changed()])
    assert len(shown) == 1
    assert _STATE_LINE.match(shown[0])


async def test_console_output_mode_shows_worker_output_only() -> None:
    out = io.StringIO()
    console = Console(stream=out, live=False, mode="output")
    assert console.capacity("scraper:0") > 0
    shown = await _shown(
        console, out, [_changed(), _lines("shown"), OrphansCleaned(pids=(1,), reason="sweep")]
    )
    assert shown == ["scraper:0 | shown"]


class _BlockingWriter(io.StringIO):
    """A terminal that stops reading: ``write`` blocks until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.is_stuck = False

    def write(self, s: str) -> int:
        self.is_stuck = True
        self.entered.set()
        try:
            if not self.release.wait(timeout=30):
                raise TimeoutError("test never released the writer")
        finally:
            self.is_stuck = False
        return super().write(s)


async def test_console_blocked_stream_never_blocks_deliver_and_reports_drops() -> None:
    out = _BlockingWriter()
    console = Console(stream=out, live=False)
    async with anyio.create_task_group() as tg:
        await tg.start(console.run)
        console.deliver(_lines("first"))
        await wait_until(out.entered.is_set)  # the writer is now stuck in write()
        count = PLAIN_MAX_BYTES // 2 // 16  # lines of 16 bytes: half the buffer a chunk
        chunk = tuple(f"line {i:010d}" for i in range(count))
        for _ in range(3):  # 1.5 times what fits
            console.deliver(_lines(*chunk))
        console.deliver(_changed())  # a state change is kept even when output is full
        console.deliver(_dropped(5))
        # Every deliver came back while the writer is still stuck, so none waited for
        # it: it is let go only below (or gives up after 30 s, which the flag tells).
        assert out.is_stuck
        share = int(PLAIN_MAX_BYTES * console_module.SHARE)
        assert (
            console.capacity("scraper:0") == PLAIN_MAX_BYTES - share
        )  # kept for the other processes
        out.release.set()
        await wait_until(lambda: console.capacity("scraper:0") == PLAIN_MAX_BYTES)
        console.deliver(_lines("after the storm"))
        await wait_until(lambda: "after the storm" in out.getvalue())
        tg.cancel_scope.cancel()
    shown = out.getvalue().splitlines()
    assert shown[0].endswith("first")
    printed = sum(1 for line in shown if line.startswith("scraper:0 | line "))
    assert printed == share // 16  # one process takes its share of the buffer, whole lines
    assert any(_STATE_LINE.match(line) for line in shown)
    dropped = [int(n) for n in re.findall(r"\[(\d+) lines dropped\]", out.getvalue())]
    assert dropped == [3 * count - printed + 5]
    assert shown[-1].endswith("after the storm")


async def test_console_unread_pipe_bounds_memory_and_recovers() -> None:
    """A pipe nobody reads (a paused terminal): lines are dropped, then counted."""
    r, w = os.pipe()
    received = bytearray()

    async def read_to_eof() -> None:
        with os.fdopen(r, "rb", buffering=0) as reader:
            while chunk := await anyio.to_thread.run_sync(reader.read, 1 << 20):
                received.extend(chunk)

    line = "x" * 1000
    count = 50_000
    assert count * 1000 > 2.5 * PLAIN_MAX_BYTES + (1 << 20)
    async with anyio.create_task_group() as outer:
        with os.fdopen(w, "w", encoding="utf-8") as writer:
            console = Console(stream=writer)  # live=None: a pipe is not a terminal
            async with anyio.create_task_group() as tg:
                await tg.start(console.run)
                try:
                    with anyio.fail_after(10):
                        # 50 MB: beyond the pipe (1 MiB), a batch the writer holds and
                        # the buffer (each at most PLAIN_MAX_BYTES and a quarter)
                        for i in range(count):
                            console.deliver(_lines(f"{i} {line}"))
                            if i % 1000 == 0:
                                await anyio.lowlevel.checkpoint()
                    console.deliver(_lines("quiet", process="other:0"))  # its fair share
                finally:
                    outer.start_soon(read_to_eof)  # the terminal resumes
                await wait_until(lambda: b"lines dropped]" in received, seconds=20)
                await wait_until(lambda: console.capacity("scraper:0") == PLAIN_MAX_BYTES)
                tg.cancel_scope.cancel()
        # closing the writer ends the reader
    text = received.decode()
    assert text.startswith("scraper:0 | 0 x")
    assert text.count("\n") < count
    assert "other:0 | quiet\n" in text
    dropped = sum(int(n) for n in re.findall(r"scraper:0 \[(\d+) lines dropped\]", text))
    assert dropped + text.count("scraper:0 | ") == count


@pytest.mark.parametrize("json_logs", [False, True])
async def test_console_to_a_regular_file_keeps_up_with_any_flood(
    tmp_path: Path, json_logs: bool
) -> None:
    """A file takes every line at once, on the event loop: no buffer, so no drops."""
    count, line = 40, "y" * 99
    chunk = [f"{line}"] * 10_000  # 1 MB a chunk, 40 MB in all, with no pause
    with (tmp_path / "out").open("w", encoding="utf-8") as out:
        console = Console(stream=out, json_logs=json_logs)
        async with anyio.create_task_group() as tg:
            await tg.start(console.run)
            for _ in range(count):
                console.deliver(_lines(*chunk))
                assert console.capacity("scraper:0") == PLAIN_MAX_BYTES  # nothing waits
            tg.cancel_scope.cancel()
    with (tmp_path / "out").open("rb") as written:
        shown = sum(1 for text in written if line.encode() in text)
    assert shown == count * len(chunk)
    assert b"dropped" not in (tmp_path / "out").read_bytes()


@pytest.mark.parametrize("kind", ["pipe", "socket"])
async def test_console_to_a_pipe_or_socket_keeps_the_given_descriptor_blocking(
    kind: str,
) -> None:
    """Written without blocking through a means of its own (systemd's journal is a socket):
    stdout, and a stderr sharing it (``2>&1``), stay blocking for every other writer."""
    if kind == "pipe":
        r, w = os.pipe()
    else:
        left, right = socket.socketpair()
        r, w = right.detach(), left.detach()
    fds_before = len(os.listdir("/proc/self/fd"))
    try:
        with os.fdopen(w, "w", encoding="utf-8", closefd=False) as writer:
            console = Console(stream=writer)
            async with anyio.create_task_group() as tg:
                await tg.start(console.run)
                console.deliver(_lines("without blocking"))
                assert (
                    console.capacity("scraper:0") == PLAIN_MAX_BYTES
                )  # written at once, on the loop
                assert os.get_blocking(w)
                tg.cancel_scope.cancel()
        assert len(os.listdir("/proc/self/fd")) == fds_before  # its own one is closed
        assert os.read(r, 100) == b"scraper:0 | without blocking\n"
    finally:
        os.close(r)
        os.close(w)


async def test_console_pipe_whose_reader_left_is_said_once_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """EPIPE on the loop's own descriptor: one warning, then output is dropped quietly."""
    r, w = os.pipe()
    with (
        os.fdopen(w, "w", encoding="utf-8") as writer,
        caplog.at_level(logging.WARNING, logger="supervisor.console"),
    ):
        console = Console(stream=writer)
        os.close(r)  # the reader goes away after dsup started
        async with anyio.create_task_group() as tg:
            await tg.start(console.run)
            for i in range(3):
                console.deliver(_lines(f"line {i}"))
            console.deliver(_changed())
            assert console.capacity("scraper:0") == PLAIN_MAX_BYTES  # nothing piles up
            tg.cancel_scope.cancel()
    warnings = [rec for rec in caplog.records if rec.name.startswith("supervisor.console")]
    assert len(warnings) == 1


async def test_console_cancel_with_stuck_stream_returns_in_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(console_module, "FINAL_FLUSH_SECONDS", 0.2)
    out = _BlockingWriter()
    console = Console(stream=out, live=False)
    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                await tg.start(console.run)
                console.deliver(_lines("stuck"))
                await wait_until(out.entered.is_set)
                console.deliver(_changed())
                tg.cancel_scope.cancel()
    finally:
        out.release.set()


async def test_console_live_takes_a_bounded_share_per_redraw_and_counts_the_rest() -> None:
    out = io.StringIO()
    console = Console(stream=out, live=True, status=list)
    share = int(LIVE_MAX_BYTES * console_module.SHARE)
    count = share // 16  # lines of 16 bytes: the whole share of one process
    console.deliver(_lines(*(f"line {i:010d}" for i in range(count))))
    assert console.capacity("scraper:0") == LIVE_MAX_BYTES - share
    console.deliver(_lines("one too many", "and another"))
    text = "\n".join(_console.screen(await _written(console, out)))
    assert "[2 lines dropped]" in text
    assert f"line {count - 1:010d}" in text
    assert "PROCESS" in text  # the final table, even with no rows


def _run_live_driver(rows: int, columns: int, *args: str) -> str:
    """Run tests/workers/console_pty_driver.py on a real pseudo-terminal; its output."""
    argv = [sys.executable, "-u", str(WORKERS / "console_pty_driver.py"), *args]
    with PtyRun(argv, rows=rows, columns=columns) as run:
        code = run.wait_exit()
    assert code == 0, run.text
    return run.text


@pytest.fixture(scope="module")
def live_output() -> str:
    """The driver's output on a 100x30 terminal, shared by the tests that read it."""
    return _run_live_driver(30, 100)


def test_console_live_table_refreshes_in_place_in_a_real_terminal(live_output: str) -> None:
    text = live_output
    screen = _console.screen(text)
    headers = [line for line in screen if "PROCESS" in line and "STATE" in line]
    assert len(headers) == 1, screen  # redrawn in place, not scrolled
    for column in ("PID", "UPTIME", "RESTARTS", "LAST EXIT"):
        assert column in headers[0]
    scraper = next(line.split() for line in screen if line.strip().startswith("scraper:0"))
    assert scraper[1:3] == ["RUNNING", "1764242"]
    assert scraper[-2:] == ["exit", "1"]
    crasher = next(line.split() for line in screen if line.strip().startswith("crasher:0"))
    assert crasher[1] == "FATAL"
    assert crasher[-1] == "SIGKILL"
    assert sum("ptynode" in line for line in screen) == 1, screen  # the title, once
    recent = [line for line in screen if "hello page 1" in line or "warn: slow" in line]
    assert len(recent) == 2
    assert any("STARTING -> RUNNING" in line for line in screen)
    # a log record goes into the table's recent area, not across the redraw
    logged = [i for i, line in enumerate(screen) if "disk nearly full" in line]
    assert len(logged) == 1
    assert logged[0] > screen.index(headers[0])
    assert re.search(r"\x1b\[[0-9;]*mRUNNING", text)  # the state is coloured
    assert text.count("PROCESS") >= 3  # two refreshes and the final table


def test_console_live_escapes_control_characters_and_keeps_colour(live_output: str) -> None:
    """A ``\\r`` no longer eats the ``name |`` prefix; no OSC reaches the terminal."""
    text = live_output
    screen = _console.screen(text)
    assert "scraper:0 | RED\\x0d\\x0dX\\x08\\x08" in screen, screen
    assert "scraper:0 | \\x0b\\x0c\\x0dnext line" in screen, screen
    assert "\x1b]" not in text
    assert not {"\x07", "\x08", "\x0b", "\x0c"} & set(text)
    assert re.search(r"\x1b\[[0-9;]*31[0-9;]*mRED", text)  # the worker's colour is kept


def test_console_plain_on_a_real_terminal_escapes_every_control_character() -> None:
    """The plain view on a terminal: no escape sequence of a worker reaches it raw."""
    text = _run_live_driver(30, 100, "--plain")
    assert "scraper:0 | RED\\x0d\\x0dX\\x08\\x08\r\n" in text
    assert "scraper:0 | \\x0b\\x0c\\x0dnext line\r\n" in text
    assert "crasher:0 | filler 7\r\n" in text
    assert not {"\x1b", "\x07", "\x08", "\x0b", "\x0c"} & set(text)


class _TtyLike(io.StringIO):
    """A log handler's stream that says it is a terminal, so the live view captures it."""

    def isatty(self) -> bool:
        return True


async def test_console_live_log_record_is_shown_before_the_changes_it_causes() -> None:
    """A log record written before a state change, in the same batch, shows first."""
    out = io.StringIO()
    handler = logging.StreamHandler(_TtyLike())
    logging.getLogger().addHandler(handler)
    try:
        console = Console(stream=out, live=True, status=list)
        async with anyio.create_task_group() as tg:
            await tg.start(console.run)
            # The first redraw has claimed its log records once it writes.
            await wait_until(lambda: bool(out.getvalue()))
            logging.getLogger("runner").warning("SIGINT: stopping every process")
            console.deliver(
                _changed(old=ProcessState.RUNNING, new=ProcessState.STOPPING, at=time.time())
            )
            tg.cancel_scope.cancel()  # the final redraw shows both, from one batch
    finally:
        logging.getLogger().removeHandler(handler)
    screen = _console.screen(out.getvalue())
    logged = [i for i, line in enumerate(screen) if "SIGINT: stopping" in line]
    changed = [i for i, line in enumerate(screen) if "RUNNING -> STOPPING" in line]
    assert len(logged) == len(changed) == 1, screen
    assert logged[0] < changed[0], screen
    assert not handler.stream.getvalue()  # captured, not written across the table


def test_console_live_narrow_pane_keeps_title_pid_and_state_whole() -> None:
    """At 60 columns the title stays on the top row and PID, STATE are not cut."""
    rows = 16
    screen = _console.screen(_run_live_driver(rows, 60), height=rows)
    assert len(screen) <= rows
    assert screen[0].startswith("dsup ptynode"), screen  # the final table kept its title
    assert screen[0].endswith("…"), screen  # cut, not wrapped
    assert max(map(len, screen)) <= 60
    scraper = next(line.split() for line in screen if line.strip().startswith("scrape"))
    assert scraper[1:3] == ["RUNNING", "1764242"], screen
    crasher = next(line.split() for line in screen if line.strip().startswith("crash"))
    assert crasher[1] == "FATAL", screen


def test_console_live_small_pane_after_an_echo_keeps_title_names_and_more_count() -> None:
    """60x20 with 17 rows after make's echo line: title kept, nothing cut."""
    rows = 20
    raw = _run_live_driver(rows, 60, "15", "make: .venv/bin/dsup run examples/dsup.toml")
    screen = _console.screen(raw, height=rows)
    assert len(screen) <= rows
    assert screen[0].startswith("dsup ptynode"), screen  # the echo went into the scrollback
    assert max(map(len, screen)) <= 60
    names = [line.split()[0] for line in screen if line.startswith("sleeper")]
    assert names, screen
    assert all(re.fullmatch(r"sleeper-long:\d+", name) for name in names), screen
    header = next(line for line in screen if "PROCESS" in line)
    assert header.split()[-2:] == ["LAST", "EXIT"], screen  # padding went before content
    more = [line for line in screen if line.startswith("... ")]
    assert more == [f"... {15 - len(names)} more"], screen  # whole, below the table


def _flood_and_quiet(console: Console, budget: int) -> int:
    """A flooder fills the budget twice over around a quiet worker's two lines; its lines."""
    flood = tuple(f"flood {i:09d}" for i in range(budget // 16))
    console.deliver(_lines(*flood, process="flood:0"))
    console.deliver(_dropped(70_000, process="flood:0"))
    console.deliver(_lines("crashing now", process="crash:0"))
    console.deliver(_lines("Traceback: boom", process="crash:0", stderr=True))
    console.deliver(_lines(*flood, process="flood:0"))
    return len(flood)


async def test_console_plain_flooder_never_hides_a_quiet_process() -> None:
    """The quiet worker's lines are kept; the flood's note has the true count."""
    out = _BlockingWriter()
    console = Console(stream=out, live=False)
    async with anyio.create_task_group() as tg:
        await tg.start(console.run)
        console.deliver(_lines("first"))
        await wait_until(out.entered.is_set)  # the writer is stuck: nothing is drained
        flood = _flood_and_quiet(console, PLAIN_MAX_BYTES)
        out.release.set()
        await wait_until(lambda: "lines dropped]" in out.getvalue())
        tg.cancel_scope.cancel()
    shown = out.getvalue().splitlines()
    assert "crash:0 | crashing now" in shown
    assert "crash:0 ! Traceback: boom" in shown
    printed = sum(1 for line in shown if line.startswith("flood:0 | "))
    assert 0 < printed < flood  # its share of the buffer, the rest kept for the others
    # 70 000 + what the first flood could not keep + the whole second flood
    assert f"flood:0 [{70_000 + 2 * flood - printed} lines dropped]" in shown


async def test_console_live_flooder_never_hides_a_quiet_process() -> None:
    """On screen, the crash lines and the flood's true drop count both show."""
    out = _TtyLike()
    console = Console(stream=out, live=True, status=list)
    flood = _flood_and_quiet(console, LIVE_MAX_BYTES)
    screen = _console.screen(await _written(console, out))
    assert any(line.endswith("crash:0 | crashing now") for line in screen), screen
    assert any(line.endswith("crash:0 ! Traceback: boom") for line in screen), screen
    share = int(LIVE_MAX_BYTES * console_module.SHARE) // 16  # whole lines of the first flood
    note = f"flood:0 # [{70_000 + 2 * flood - share:,} lines dropped]"
    assert any(line.endswith(note.replace(",", "")) for line in screen), screen


async def test_console_drop_note_says_1_line() -> None:
    """Singular."""
    out = io.StringIO()
    events = [_dropped(1, process="s:0")]
    shown = await _shown(Console(stream=out, live=False), out, events)
    assert shown == ["s:0 [1 line dropped]"]


async def test_console_json_logs_carry_dsup_log_records_and_keep_stderr_quiet(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With --json-logs, records become {"type": "log"} objects on the stream."""
    out = io.StringIO()
    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger().addHandler(handler)
    try:
        console = Console(stream=out, json_logs=True)
        async with anyio.create_task_group() as tg:
            await tg.start(console.run)
            logging.getLogger("supervisor.node").warning("SIGINT: stopping %s", "everything")
            await anyio.to_thread.run_sync(
                lambda: logging.getLogger("supervisor.reaper.reaper").error("from a thread")
            )
            await wait_until(lambda: out.getvalue().count('"type": "log"') == 2)
            tg.cancel_scope.cancel()
    finally:
        logging.getLogger().removeHandler(handler)
    objects = [json.loads(line) for line in out.getvalue().splitlines()]
    logs = [(o["level"], o["logger"], o["message"]) for o in objects if o["type"] == "log"]
    assert logs == [
        ("WARNING", "supervisor.node", "SIGINT: stopping everything"),
        ("ERROR", "supervisor.reaper.reaper", "from a thread"),
    ]
    assert all({"time", "node"} <= o.keys() for o in objects)
    assert "stopping" not in capsys.readouterr().err


@pytest.mark.parametrize("to_file", [False, True], ids=["written-in-a-thread", "on-the-loop"])
async def test_console_json_logs_write_a_record_of_another_thread_as_it_comes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, to_file: bool
) -> None:
    """A record logged in another thread wakes the writer: it is not looked for at every
    refresh (an idle node's console would wake four times a second for nothing)."""
    monkeypatch.setattr(console_module, "REFRESH_SECONDS", 3600.0)
    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger().addHandler(handler)
    path = tmp_path / "out.jsonl"
    try:
        with path.open("w") if to_file else io.StringIO() as out:
            console = Console(stream=out, json_logs=True)
            async with anyio.create_task_group() as tg:
                await tg.start(console.run)
                thread = threading.Thread(
                    target=lambda: logging.getLogger("supervisor.reaper").error("from a thread")
                )
                thread.start()
                thread.join(10)

                def written() -> str:
                    return path.read_text() if to_file else out.getvalue()  # type: ignore[union-attr]

                await wait_until(lambda: '"from a thread"' in written())
                tg.cancel_scope.cancel()
    finally:
        logging.getLogger().removeHandler(handler)


async def test_console_plain_leaves_log_records_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger().addHandler(handler)
    try:
        out = io.StringIO()
        await _written(Console(stream=out, live=False), out, [_lines("x")])
        logging.getLogger("supervisor.node").warning("plain record")
    finally:
        logging.getLogger().removeHandler(handler)
    assert "plain record" in capsys.readouterr().err


# -- printable: a worker's line made safe for a terminal -------

_GARBAGE = "\x1b[31mRED\x1b[0m\x1b]0;title\x07\r\rX\x08\x08"


def test_printable_leaves_an_ordinary_line_and_tabs_alone() -> None:
    for line in ("", "plain text", "a\tb", "unicode \u00e9\u4e2d \u00a0nbsp", "[31m not an escape"):
        assert humanize.printable(line) == line
        assert humanize.printable(line, keep_color=True) == line


def test_printable_drops_escape_sequences_and_shows_controls_as_hex() -> None:
    assert humanize.printable(_GARBAGE) == "RED\\x0d\\x0dX\\x08\\x08"
    assert humanize.printable("\x0b\x0c\rstart") == "\\x0b\\x0c\\x0dstart"
    assert humanize.printable("\x1b]52;c;aGk=\x1b\\after") == "after"  # OSC 52 clipboard write
    assert humanize.printable("\x1b[2J\x1b[H\x1b[?25lhi\x1b7\x1b(B") == "hi"
    assert humanize.printable("\x1bP1$r\x1b\\dcs") == "dcs"
    assert humanize.printable("lone \x1b") == "lone \\x1b"
    assert humanize.printable("del\x7f c1\x9b31m") == "del\\x7f c1\\x9b31m"
    assert humanize.printable("crlf\r") == "crlf"


def test_printable_keeps_only_colour_when_asked() -> None:
    kept = humanize.printable(_GARBAGE, keep_color=True)
    assert kept == "\x1b[31mRED\x1b[0m\\x0d\\x0dX\\x08\\x08"
    assert humanize.printable("\x1b[1;38;5;196mhot\x1b[K", keep_color=True) == (
        "\x1b[1;38;5;196mhot"
    )


def test_printable_output_never_holds_a_control_character_but_tab() -> None:
    every = "".join(map(chr, range(256))) + "\x1b[" + "\x1b]unterminated\x07\x1b"
    controls = {chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))} - {"\t"}
    assert not controls & set(humanize.printable(every))
    colour_free = re.sub(r"\x1b\[[0-9;:]*m", "", humanize.printable(every, keep_color=True))
    assert not controls & set(colour_free)


def test_printable_escapes_bidi_controls() -> None:
    """The "Trojan Source" characters are shown, never obeyed."""
    assert humanize.printable("bidi:\u202eabc") == "bidi:\\u202eabc"
    line = "".join(map(chr, (0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))))
    assert humanize.printable(line) == "".join(f"\\u{ord(c):04x}" for c in line)
    assert humanize.printable("\u202e\x1b[31mred", keep_color=True) == "\\u202e\x1b[31mred"
    assert (
        humanize.printable("caf\u00e9 \u05e9\u05dc\u05d5\u05dd")
        == "caf\u00e9 \u05e9\u05dc\u05d5\u05dd"
    )


def test_plural() -> None:
    assert humanize.plural(1, "line") == "1 line"
    assert humanize.plural(0, "line") == "0 lines"
    assert humanize.plural(3, "orphan process") == "3 orphan processes"


def test_fair_tail_keeps_a_quiet_process_line_and_fills_the_room_in_time_order() -> None:
    """A flood keeps what the others leave; the room is used up; order is kept."""
    flood = [Entry("flood:0", "flood:0", "|", f"f{i}") for i in range(300)]
    entries = [*flood[:150], Entry("crash:0", "crash:0", "!", "boom"), *flood[150:]]
    entries.append(Entry("#", "12:00:00", "#", "crash:0 RUNNING -> BACKOFF"))
    shown = [e.text for e in fair_tail(entries, 6, {})]
    assert shown == ["boom", "f296", "f297", "f298", "f299", "crash:0 RUNNING -> BACKOFF"]
    assert fair_tail(entries[:3], 6, {}) == entries[:3]


def _talk_and_crash(tmp_path: Path) -> Path:
    """Two talkers flooding the recent area, and a crasher that exits 1 once."""
    talker = [sys.executable, str(WORKERS / "console_talker.py")]
    crasher = ["sh", "-c", "echo crasher up; echo boom >&2; exit 1"]
    return write_config(
        tmp_path,
        f"[programs.talker]\ncommand = {talker!r}\nnumprocs = 2\nstart_seconds = 0\n\n"
        f'[programs.crasher]\ncommand = {crasher!r}\nrestart = "never"\nstart_seconds = 0\n',
    )


def test_console_live_final_screen_keeps_crashes_shutdown_lines_and_the_sigint_note(
    tmp_path: Path,
) -> None:
    """State changes and log records are not pushed off by older worker output.

    Real dsup on a real terminal: Ctrl-C is typed once the crash is on screen
    and both talkers have filled their share of the recent lines.
    """
    rows = 24
    with PtyRun.dsup(_talk_and_crash(tmp_path), rows=rows, columns=100) as run:
        run.read_until(
            lambda text: (
                "crasher:0 RUNNING -> EXITED" in text
                and all(re.search(rf"talker:{i} \| talk \d\d\d", text) for i in (0, 1))
            ),
            "the crash and 100 lines of each talker",
        )
        run.type(b"\x03")
        assert run.wait_exit() == 0
    final = _console.screen(run.text, height=rows)
    recent = "\n".join(final)
    note = "~ SIGINT: stopping every process (Ctrl-C again to kill them at once)"
    assert any(line.endswith(note) for line in final), final  # whole on 100 columns
    assert re.search(r"# crasher:0 RUNNING -> EXITED pid \d+ exit 1", recent), final
    assert "crasher:0 ! boom" in recent, final
    for i in (0, 1):
        assert f"# talker:{i} RUNNING -> STOPPING" in recent, final
        assert f"# talker:{i} STOPPING -> STOPPED" in recent, final
        assert f"talker:{i} | talk " in recent, final  # each talker keeps a share too


def _change(process: str, change: str, *, stopping: bool = False) -> Entry:
    """A state change of ``process`` as the recent area keeps it."""
    return Entry(process, "12:00:00", "#", f"{process} {change}", stopping=stopping)


def test_fair_tail_keeps_each_process_state_changes_and_the_lines_the_rest_allows() -> None:
    """9 processes in 25 lines keep their 18 shutdown changes and the note first."""
    processes = [*(f"talker:{i}" for i in range(8)), "crasher:0"]
    entries = [_change(p, "STARTING -> RUNNING") for p in processes[:-1]]
    for run in range(3):  # the crasher crashed twice and runs again
        entries += [
            _change("crasher:0", f"-> STARTING {run}"),
            _change("crasher:0", f"-> RUNNING {run}"),
        ]
        if run < 2:
            entries += [Entry("crasher:0", "crasher:0", "!", f"boom {run}")]
            entries += [_change("crasher:0", f"RUNNING -> EXITED {run}")]
            entries += [Entry(p, p, "|", f"talk {run}.{n}") for n in range(30) for p in processes]
    entries.append(Entry("~", "12:00:01", "~", "SIGINT: stopping every process"))
    shutdown = [_change(p, change) for change in ("-> STOPPING", "-> STOPPED") for p in processes]
    entries += shutdown
    shown = fair_tail(entries, 25, {})
    assert len(shown) == 25
    texts = [e.text for e in shown]
    assert set(shutdown) < set(shown), texts
    assert "SIGINT: stopping every process" in texts
    # The 4 cells left: the newest lines, as the crasher ran and talked again since its exit.
    assert [(e.key, e.text) for e in shown if e.mark == "|"] == [
        (p, "talk 1.29") for p in processes[-4:]
    ], texts
    assert shown == sorted(shown, key=entries.index)  # time order is kept


def test_fair_tail_keeps_a_stop_change_that_last_lines_were_read_after() -> None:
    """Lines read after a STOPPING change (written before the signal) leave it current.

    Two floods stop; each wrote 5 more lines after its STOPPING change was
    recorded. In 7 lines: the note, both changes of each, and each one's newest line.
    """
    talkers = ["talker:0", "talker:1"]
    entries = [Entry(p, p, "|", f"talk {n}") for n in range(100) for p in talkers]
    entries += [Entry("~", "12:00:01", "~", "SIGINT: stopping every process")]
    stopping = [_change(p, "RUNNING -> STOPPING", stopping=True) for p in talkers]
    entries += stopping
    entries += [Entry(p, p, "|", f"talk {n}") for n in range(100, 105) for p in talkers]
    stopped = [_change(p, "STOPPING -> STOPPED") for p in talkers]
    entries += stopped
    shown = fair_tail(entries, 7, {})
    texts = [e.text for e in shown]
    assert set(stopping + stopped) < set(shown), texts
    assert [e.text for e in shown if e.mark == "|"] == ["talk 104", "talk 104"], texts
    # While they still run, the stop is not closed: the lines after it are the news.
    running = entries[: -len(stopped)]
    assert not set(stopping) & set(fair_tail(running, 5, {})), texts


def _json_objects(config: Path, done: Callable[[list[dict[str, object]]], bool]) -> list[str]:
    """``dsup run --json-logs CONFIG`` until ``done(objects)``, then SIGTERM; every line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "run", "--json-logs", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        out = bytearray()
        deadline = time.monotonic() + 20
        while not done([json.loads(line) for line in out.split(b"\n")[:-1]]):  # whole lines
            assert time.monotonic() < deadline, out.decode()
            if select.select([proc.stdout], [], [], 0.1)[0]:
                out += os.read(proc.stdout.fileno(), 65536)
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=20)
        out += rest
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=20)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0, err
    assert not err, err  # nothing is left as plain text on stderr
    return out.decode().splitlines()


def test_console_json_logs_tell_a_spawn_failure_once_by_its_state_object(tmp_path: Path) -> None:
    """What console.md says a shipper gets for a process that cannot start."""
    config = write_config(
        tmp_path,
        '[programs.ghost]\ncommand = ["dsup-test-no-such-program"]\n'
        "start_retries = 1\nbackoff_seconds = 0\n\n"
        '[programs.lost]\ncommand = ["true"]\ncwd = "no-such-dir"\n'
        "start_retries = 1\nbackoff_seconds = 0\n",
    )
    lines = _json_objects(
        config,
        lambda objects: sum(o.get("new") == "FATAL" for o in objects) == 2,
    )
    objects = [json.loads(line) for line in lines]
    fatal = {o["process"]: o for o in objects if o["type"] == "state" and o["new"] == "FATAL"}
    assert fatal.keys() == {"ghost:0", "lost:0"}, lines
    assert str(fatal["ghost:0"]["reason"]).startswith("cannot start: "), lines
    assert "dsup-test-no-such-program" in str(fatal["ghost:0"]["reason"]), lines
    assert str(fatal["lost:0"]["reason"]).startswith("cannot start: "), lines
    assert "no-such-dir" in str(fatal["lost:0"]["reason"]), lines
    logged = [str(o["message"]) for o in objects if o["type"] == "log"]
    # Besides the state objects, only dsup check's warnings at start-up, once each.
    told = sorted(m.split(": ")[1] for m in logged if "no-such" in m)
    assert told == ["programs.ghost.command", "programs.lost.cwd"], lines


def _flood_entries(floods: int, lines: int) -> list[Entry]:
    """``floods`` processes that each wrote ``lines`` lines and lost 33 more after each."""
    entries: list[Entry] = []
    for n in range(lines):
        for i in range(floods):
            p = f"flood:{i}"
            entries += [
                Entry(p, p, "|", f"{p} line {n}"),
                Entry(p, p, "#", "[33 lines dropped]", 33),
            ]
    return entries


def test_on_screen_keeps_log_records_state_changes_and_a_quiet_crash_in_a_big_fleet() -> None:
    """20 flooders in 17 lines: notes first, the crash line, one merged drop line."""
    started = [
        Entry(f"flood:{i}", "12:00:00", "#", f"flood:{i} STARTING -> RUNNING") for i in range(20)
    ]
    crash = [
        Entry("crasher:0", "crasher:0", "!", "boom"),
        Entry("crasher:0", "12:00:01", "#", "crasher:0 RUNNING -> EXITED pid 7 exit 1"),
    ]
    ctrl_z = Entry("~", "12:00:02", "~", "dsup ignores Ctrl-Z (SIGTSTP); Ctrl-C stops the fleet")
    entries = [*started, *crash, ctrl_z, *_flood_entries(20, 5)]
    busy = {f"flood:{i}": 400 for i in range(20)}
    shown = on_screen(entries, 17, busy)
    texts = [e.text for e in shown]
    assert len(shown) == 17, texts
    assert ctrl_z in shown, texts
    assert set(crash) < set(shown), texts  # the quiet process's crash line and its exit
    dropped = [t for t in texts if "dropped" in t]
    assert dropped == ["[3300 lines dropped from 20 processes]"], texts  # 20 x 5 x 33
    assert sum(t.startswith("flood:") and " line 4" in t for t in texts) == 13, texts
    # A gap mark takes a row from a process's own lines, never its last: none here.
    assert not [e for e in shown if e.mark == layout_module.GAP_MARK], texts
    assert shown == sorted(shown, key=lambda e: entries.index(e) if e in entries else 10**6)


def _quiet_among_floods() -> list[Entry]:
    """A quiet worker's 5 lines, each after 3 lines of each of 3 flooders."""
    entries: list[Entry] = []
    for n in range(1, 6):
        for f in range(3):
            entries += [Entry(f"flood:{f}", f"flood:{f}", "|", f"flood {n}.{k}") for k in range(3)]
        entries.append(Entry("quiet:0", "quiet:0", "|", f"quiet line {n}"))
    return entries


_BUSY = {"flood:0": 50, "flood:1": 50, "flood:2": 50, "quiet:0": 5}


def test_on_screen_marks_the_lines_of_a_process_it_leaves_off() -> None:
    """Lines 4 and 5 of a quiet worker appeared without 1 to 3 and nothing said so."""
    entries = _quiet_among_floods()
    shown = on_screen(entries, 10, _BUSY, explain=True)
    texts = [e.text for e in shown]
    assert len(shown) == 10, texts
    quiet = [e.text for e in shown if e.key == "quiet:0"]
    gap = "[3 lines not shown; dsup ctl tail quiet:0 shows every line]"
    assert quiet == [gap, "quiet line 4", "quiet line 5"], texts
    assert texts.index(gap) == texts.index("quiet line 4") - 1, texts
    assert len([e for e in shown if e.mark == layout_module.GAP_MARK]) == 10 // 5, texts
    again = [e.text for e in on_screen(entries, 10, _BUSY)]
    assert "[3 lines not shown]" in again, again  # where they are is said once, then short


def test_on_screen_marks_nothing_when_every_line_fits() -> None:
    entries = _quiet_among_floods()
    assert on_screen(entries, len(entries), _BUSY) == entries


def test_on_screen_keeps_the_sigint_note_and_the_newest_stops_at_shutdown() -> None:
    """The final screen: the SIGINT note, then as many stops as fit, newest first."""
    processes = [f"flood:{i}" for i in range(20)]
    entries = _flood_entries(20, 5)
    sigint = Entry("~", "12:00:03", "~", "SIGINT: stopping every process")
    entries.append(sigint)
    entries += [Entry(p, "12:00:03", "#", f"{p} RUNNING -> STOPPING") for p in processes]
    stops = [Entry(p, "12:00:04", "#", f"{p} STOPPING -> STOPPED") for p in processes]
    entries += stops
    shown = on_screen(entries, 17, {})
    texts = [e.text for e in shown]
    assert texts[0] == "[3300 lines dropped from 20 processes]", texts
    assert texts[1] == "SIGINT: stopping every process", texts
    assert texts[2:] == [e.text for e in stops[-15:]], texts


def test_on_screen_leaves_a_single_process_drop_note_as_it_is() -> None:
    entries = _flood_entries(1, 3)
    assert on_screen(entries, 10, {}) == entries


def test_console_live_big_fleet_keeps_notes_a_crash_and_one_drop_line(tmp_path: Path) -> None:
    """20 flooders on a 40-row terminal: the Ctrl-Z and SIGINT notes, the crash.

    Real dsup on a real terminal: the screen is read as it is after each redraw.
    """
    flood = [sys.executable, str(WORKERS / "console_flood.py")]
    crasher = ["sh", "-c", "echo crasher up; echo boom >&2; exit 1"]
    config = write_config(
        tmp_path,
        f"[programs.flood]\ncommand = {flood!r}\nnumprocs = 20\nstart_seconds = 0\n\n"
        f'[programs.crasher]\ncommand = {crasher!r}\nrestart = "never"\nstart_seconds = 0\n',
    )
    rows = 40
    ctrl_z = "~ dsup ignores Ctrl-Z (SIGTSTP)"
    with PtyRun.dsup(config, rows=rows, columns=100) as run:

        def showing(*wanted: str) -> Callable[[str], bool]:
            def done(_: str) -> bool:
                shown = "\n".join(_console.screen(run.text, height=rows))
                return all(re.search(pattern, shown) for pattern in wanted)

            return done

        crashed = (r"# crasher:0 RUNNING -> EXITED pid \d+ exit 1", r"crasher:0 ! boom")
        merged = r"dsup # \[\d+ lines dropped from \d+ processes\]"
        run.read_until(showing(*crashed, merged), "the crash and the merged drop line")
        run.type(b"\x1a")
        run.read_until(showing(*crashed, merged, re.escape(ctrl_z)), "the Ctrl-Z note")
        screen = _console.screen(run.text, height=rows)
        assert not [line for line in screen if re.search(r"flood:\d+ # \[", line)], screen
        assert any(re.search(r"flood:\d+ \| flood:\d+ line \d+", line) for line in screen), screen
        run.type(b"\x03")
        assert run.wait_exit() == 0
    final = _console.screen(run.text, height=rows)
    note = "~ SIGINT: stopping every process (Ctrl-C again to kill them at once)"
    assert any(line.endswith(note) for line in final), final
    stopped = [line for line in final if re.search(r"# flood:\d+ STOPPING -> STOPPED", line)]
    assert len(stopped) >= 5, final


def _long_name_view(width: int) -> list[str]:
    """The live view of two processes of a 64-character program, at ``width`` columns."""
    from rich.console import Console as RichConsole

    from supervisor.console.layout import layout
    from supervisor.process.status import ProcessStatus

    name = "c" * 64
    rows = [
        ProcessStatus(
            process=f"{name}:{i}",
            program=name,
            index=i,
            state=ProcessState.RUNNING,
            pid=4000 + i,
            run_id=f"r{i}",
            started_at=1_700_000_000.0,
            state_since=1_700_000_000.0,
            restarts=0,
            last_exit_code=None,
            last_exit_signal=None,
            last_error="",
        )
        for i in range(2)
    ]
    recent = [
        Entry(f"{name}:1", f"{name}:1", "|", "output from the long one"),
        Entry(f"{name}:0", "12:00:00", "#", f"{name}:0 RUNNING -> EXITED pid 4000 exit 3"),
    ]
    out = io.StringIO()
    rich = RichConsole(file=out, width=width, height=20, force_terminal=False)
    rich.print(layout("n", rows, recent, size=(width, 20), busy={})[0])
    return out.getvalue().splitlines()


@pytest.mark.parametrize("width", [80, 50])
def test_live_view_cuts_long_names_in_the_middle_and_keeps_the_message(width: int) -> None:
    """``cccc…cccc:0`` and ``:1`` stay apart; a state change keeps its state."""
    shown = _long_name_view(width)
    assert max(map(len, shown)) <= width, shown
    table = [line.split() for line in shown if re.search(r" RUNNING +400\d ", line)]
    assert [row[0][-2:] for row in table] == [":0", ":1"], shown
    assert all(re.fullmatch(r"c+…c+:\d", row[0]) for row in table), shown
    assert any(re.search(r"c+…c+:1 \| output from the long one$", line) for line in shown), shown
    assert any(re.search(r"# c+…c+:0 RUNNING -> EXITED", line) for line in shown), shown


def test_console_live_marks_the_lines_of_a_quiet_worker_left_off(tmp_path: Path) -> None:
    """Real dsup on a real terminal: a quiet worker among floods shows where its lines went."""
    flood = [sys.executable, str(WORKERS / "console_flood.py")]
    quiet = ["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do echo quiet line $i; done; exec sleep 60"]
    config = write_config(
        tmp_path,
        f"[programs.flood]\ncommand = {flood!r}\nnumprocs = 3\nstart_seconds = 0\n\n"
        f"[programs.quiet]\ncommand = {quiet!r}\nstart_seconds = 0\n",
    )
    rows = 20
    with PtyRun.dsup(config, rows=rows, columns=100) as run:
        hint = "dsup ctl tail quiet:0 shows every line"
        run.read_until(lambda _: hint in "\n".join(_console.screen(run.text)), "the first mark")
        screen = _console.screen(run.text, height=rows)
        run.type(b"\x03")
        assert run.wait_exit() == 0
    marks = [line for line in screen if re.search(r"quiet:0 : \[\d+ lines? not shown", line)]
    assert marks, screen
    at = screen.index(marks[0])
    assert screen[at + 1].startswith("quiet:0 | quiet line "), screen  # right before its lines
