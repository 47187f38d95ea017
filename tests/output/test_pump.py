"""Tests of the output pump: real children, real pipes, whole lines as bytes to consumers."""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import psutil
import pytest

from supervisor.output import pump as pump_module
from supervisor.output import readable as readable_module
from supervisor.output.framing import decode_lines
from supervisor.output.logfile import RotatingLog, backup_path, log_paths
from supervisor.output.pump import PIPE_BYTES, DropTally, make_pipe, pump
from tests._pump import Recorder, capture, spawn
from tests._wait import wait_until

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from anyio.abc import TaskGroup

    from supervisor.events import OutputChunk, Stream


def _line(i: int) -> str:
    return f"line {i} ".ljust(50, ".")


def _index(line: str) -> int:
    return int(line.split()[1])


# -- make_pipe -------------------------------------------------------------------


def test_make_pipe_is_cloexec_nonblocking_and_big() -> None:
    r, w = make_pipe()
    try:
        assert not os.get_inheritable(r)
        assert not os.get_inheritable(w)
        assert not os.get_blocking(r)
        assert os.get_blocking(w)  # the child's end stays blocking
        # Grown where the kernel allows it (pipe-max-size is 1 MiB by default).
        assert fcntl.fcntl(r, fcntl.F_GETPIPE_SZ) in (PIPE_BYTES, 65536)
    finally:
        os.close(r)
        os.close(w)


def test_make_pipe_size_zero_keeps_the_default() -> None:
    r, w = make_pipe(0)
    try:
        assert fcntl.fcntl(r, fcntl.F_GETPIPE_SZ) == 65536
    finally:
        os.close(r)
        os.close(w)


# -- pump on real children ------------------------------------------------------


async def test_pump_flood_reaches_log_and_consumer_whole_and_in_order(tmp_path: Path) -> None:
    count = 200_000
    out = Recorder()
    result = await capture(tmp_path, "out_lines.py", str(count), consumers=(out, None))
    expected = "".join(_line(i) + "\n" for i in range(count)).encode()
    assert result.exit_code == 0
    assert result.logs["stdout"] == expected
    assert result.totals == {"stdout": len(expected), "stderr": 0}
    assert out.lines == [_line(i) for i in range(count)]
    assert out.dropped == 0
    assert all(e.process == "w:0" and e.stream == "stdout" for e in out.events)


async def test_pump_drains_alternating_huge_writes_without_deadlock(tmp_path: Path) -> None:
    """The classic deadlock: the child blocks on stderr while we wait on stdout."""
    out, err = Recorder(), Recorder()
    result = await capture(tmp_path, "out_alternate.py", "4", "8", consumers=(out, err))
    size = 4 * 8 << 20
    assert result.exit_code == 0
    assert result.totals == {"stdout": size, "stderr": size}
    assert result.logs["stdout"] == (b"o" * 1023 + b"\n") * (size // 1024)
    assert result.logs["stderr"] == (b"e" * 1023 + b"\n") * (size // 1024)
    assert len(out.lines) == len(err.lines) == size // 1024


async def test_pump_cuts_a_line_without_newline_into_bounded_pieces(tmp_path: Path) -> None:
    """Same principle as 200 MiB with no newline (bench/throughput.py --memory)."""
    out = Recorder()
    result = await capture(
        tmp_path, "out_noline.py", "24", consumers=(out, None), max_line_bytes=65536
    )
    size = (24 << 20) // 3 * 3
    assert result.totals["stdout"] == size
    assert result.logs["stdout"] == b"y" * size
    assert max(len(piece) for piece in out.lines) == 65536
    assert sum(len(piece) for piece in out.lines) == size
    assert len(out.lines) == -(-size // 65536)


async def test_pump_cuts_long_utf8_lines_between_characters(tmp_path: Path) -> None:
    out = Recorder()
    result = await capture(
        tmp_path, "out_noline.py", "2", "utf8", consumers=(out, None), max_line_bytes=1000
    )
    size = (2 << 20) // 3 * 3
    assert result.totals["stdout"] == size
    assert all(len(piece.encode()) <= 1000 for piece in out.lines)
    assert "".join(out.lines) == "\u20ac" * (size // 3)


async def test_pump_hands_over_the_partial_last_line_at_eof(tmp_path: Path) -> None:
    out = Recorder()
    result = await capture(
        tmp_path, "out_lines.py", "3", "stdout", "no newline here", consumers=(out, None)
    )
    assert out.lines == [_line(0), _line(1), _line(2), "no newline here"]
    assert result.logs["stdout"].endswith(b"\nno newline here")


async def test_pump_replaces_invalid_utf8(tmp_path: Path) -> None:
    raw = b"ok\n\xff\xfe bad\ncut \xe2\x82\n\xc3\xa9t\xc3\xa9"
    out = Recorder()
    result = await capture(tmp_path, "out_bytes.py", raw.hex(), consumers=(out, None))
    assert result.logs["stdout"] == raw  # the log keeps the bytes as written
    assert out.lines == ["ok", "\ufffd\ufffd bad", "cut \ufffd", "\u00e9t\u00e9"]


async def test_pump_with_a_full_consumer_drains_everything_and_counts(tmp_path: Path) -> None:
    count = 100_000
    out = Recorder(capacity=lambda: 0)
    result = await capture(
        tmp_path, "out_lines.py", str(count), "stdout", "tail", consumers=(out, None)
    )
    assert result.totals["stdout"] == count * 51 + 4
    assert out.lines == []
    assert out.dropped == count + 1  # the partial last line too
    assert out.dropped_bytes == count * 51 + 5  # the partial line given its newline
    assert all(e.data == b"" for e in out.events)  # drops-only chunks, as they are counted


async def test_pump_tallies_drops_in_bytes_only_for_a_consumer_that_counts_none(
    tmp_path: Path,
) -> None:
    """A full consumer that counts no lines (the relay) gets their size in its tally:
    no pass over the bytes, and no chunk per read."""
    count = 100_000
    out = Recorder(capacity=lambda: 0, tally=DropTally())
    await capture(tmp_path, "out_lines.py", str(count), consumers=(out, None))
    assert out.events == []
    assert out.tally is not None
    assert out.tally.size == count * 51


class _Holding(Recorder):
    """A full consumer that counts no lines and holds that answer (the relay in a flood),
    counting how often it is asked."""

    def __init__(self) -> None:
        super().__init__(capacity=lambda: 0, tally=DropTally())
        self.asked = 0

    def room(self, process: str) -> tuple[int, DropTally | None]:
        self.asked += 1
        assert self.tally is not None
        self.tally.is_held = True
        return 0, self.tally


async def test_pump_asks_no_room_while_the_consumer_holds_its_answer(tmp_path: Path) -> None:
    """A full relay was asked for its room at every read of a flood for the same answer;
    a tally it holds stands for that answer: asked at the first read and at the end."""
    count = 200_000  # 10.2 MB: at least 10 reads of at most 1 MiB
    out = _Holding()
    await capture(tmp_path, "out_lines.py", str(count), consumers=(out, None))
    assert out.asked == 2
    assert out.tally is not None
    assert out.tally.size == count * 51
    assert out.events == []


async def test_pump_counts_drops_only_within_the_tallys_count_bytes(tmp_path: Path) -> None:
    """A full consumer that still counts a few dropped lines (the relay, after each
    message) gets those counted in each read's chunk, and the rest of the read's drop
    said uncounted: no pass over a whole read for a few lines."""
    count = 100_000
    out = Recorder(capacity=lambda: 0, tally=DropTally(count_bytes=10 * 51 + 20))
    await capture(tmp_path, "out_lines.py", str(count), consumers=(out, None))
    assert out.events
    for chunk in out.events:  # whole lines of 51 bytes only: at most 10 counted
        counted = chunk.dropped_bytes - chunk.uncounted_bytes
        assert counted == min(10 * 51, chunk.dropped_bytes)
        assert chunk.dropped == counted // 51
    assert out.dropped_bytes == count * 51


async def test_pump_skips_uncounted_while_capacity_is_negative(tmp_path: Path) -> None:
    """Capacity < 0: nothing framed, nothing counted, whole lines once it is back."""
    skipping = 4  # reads: at most READ_BYTES each, so at most 4 MiB skipped
    calls = iter(range(1 << 30))
    out = Recorder(capacity=lambda: -1 if next(calls) < skipping else 5 * 51)
    count = 200_000  # 10.2 MB, whatever the sizes of the reads
    assert skipping * pump_module.READ_BYTES < count * 51 // 2
    result = await capture(tmp_path, "out_lines.py", str(count), consumers=(out, None))
    assert result.totals["stdout"] == count * 51
    assert 0 < len(out.lines) < count
    assert out.dropped < count - len(out.lines)  # the skipped lines were not counted
    assert all(line == _line(_index(line)) for line in out.lines)


async def test_pump_reports_drops_while_the_worker_is_idle_not_at_its_next_write(
    tmp_path: Path,
) -> None:
    """A burst that overflows the consumer is counted before the worker writes again."""
    count = 50_000
    all_counted = anyio.Event()

    class Counting(Recorder):
        def deliver(self, chunk: OutputChunk) -> None:
            super().deliver(chunk)
            if self.dropped + len(self.lines) == count + 1:
                all_counted.set()

    out = Counting(capacity=lambda: 1000)
    proc, fds = spawn("console_burst.py", str(count), stdin=subprocess.PIPE)
    assert proc.stdin is not None
    os.close(fds["stderr"])
    try:
        with RotatingLog(tmp_path / "burst.log", max_bytes=0, backups=0) as log:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_pump_stdout, fds["stdout"], log, out)
                with anyio.fail_after(10):  # the worker is silent, its pipe open
                    await all_counted.wait()
                assert proc.poll() is None
                assert out.lines[:1] == ["burst 0"]
                assert out.dropped == count + 1 - len(out.lines)
                proc.stdin.close()  # the worker ends: EOF
    finally:
        proc.stdin.close()
        os.close(fds["stdout"])
        proc.wait(timeout=10)


async def test_pump_slow_consumer_gets_whole_lines_and_exact_gaps(tmp_path: Path) -> None:
    """A consumer with little room sees whole lines; ``dropped`` is each gap after them."""
    pattern = [0, 3, 0, 0, 1, 7, 0, 2, 60]  # lines of 51 bytes; 60: one byte short of 2
    calls = iter(range(1 << 30))
    out = Recorder(capacity=lambda: max(pattern[next(calls) % len(pattern)] * 51 - 1, 0))
    count = 300_000
    await capture(tmp_path, "out_lines.py", str(count), "stdout", consumers=(out, None))
    assert 0 < len(out.lines) < count
    assert len(out.lines) + out.dropped == count
    expected_next = 0
    for chunk in out.events:
        lines = decode_lines(chunk.data)
        indexes = [_index(line) for line in lines]
        assert indexes == list(range(expected_next, expected_next + len(indexes)))
        assert all(line == _line(i) for line, i in zip(lines, indexes, strict=True))
        expected_next += len(lines) + chunk.dropped  # the gap after the chunk's lines
        assert chunk.dropped_bytes == 51 * chunk.dropped
    assert expected_next == count


async def test_pump_goes_on_draining_when_the_consumer_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Recorder):
        def deliver(self, chunk: OutputChunk) -> None:
            raise RuntimeError("consumer bug")

    count = 50_000
    with caplog.at_level(logging.ERROR, logger="supervisor.output.pump"):
        result = await capture(tmp_path, "out_lines.py", str(count), consumers=(Broken(), None))
    assert result.totals["stdout"] == count * 51
    assert len(result.logs["stdout"]) == count * 51
    assert "output consumer failed" in caplog.text


async def test_pump_cancelled_stops_reading_and_leaves_the_log_flushed(tmp_path: Path) -> None:
    proc, fds = spawn("out_bytes.py", b"first\nsecond\n".hex(), "hold", stdin=subprocess.PIPE)
    assert proc.stdin is not None
    out = Recorder()
    try:
        with RotatingLog(tmp_path / "w.log", max_bytes=0, backups=0) as log:
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_pump_stdout, fds["stdout"], log, out)
                    await out.got_lines.wait()
                    tg.cancel_scope.cancel()
            assert (tmp_path / "w.log").read_bytes() == b"first\nsecond\n"
            assert not log.closed
    finally:
        proc.stdin.close()
        for fd in fds.values():
            os.close(fd)
        await anyio.to_thread.run_sync(proc.wait)
    assert out.lines == ["first", "second"]


async def _pump_stdout(fd: int, log: RotatingLog, consumer: Recorder) -> None:
    await pump(fd, process="w:0", stream="stdout", log=log, consumer=consumer, max_line_bytes=100)


async def _flood_with(
    tmp_path: Path, log: RotatingLog, act: Callable[[], Awaitable[None]]
) -> tuple[int, int, int]:
    """Pump ``out_flood.py`` into ``log``, run ``act`` under the flood, then end the flood.

    Returns the bytes the worker wrote, the bytes the pump read, and the
    worker's last line number.
    """
    proc, fds = spawn("out_flood.py", stdin=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                read: list[int] = []

                async def stdout() -> None:
                    read.append(
                        await pump(
                            fds["stdout"],
                            process="w:0",
                            stream="stdout",
                            log=log,
                            consumer=None,
                            max_line_bytes=100,
                        )
                    )

                tg.start_soon(stdout)
                await act()
                proc.stdin.close()
                assert await anyio.to_thread.run_sync(proc.wait) == 0
        wrote, lines = os.read(fds["stderr"], 100).split()[1:]
    finally:
        if not proc.stdin.closed:
            proc.stdin.close()
        for fd in fds.values():
            os.close(fd)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return int(wrote), read[0], int(lines) - 1


async def _until_written(log: RotatingLog, path: Path, more: int) -> None:
    """Wait until the pump wrote ``more`` bytes to the file at ``path`` (it exists again)."""
    await wait_until(lambda: path.exists() and path.stat().st_size >= more)


@pytest.mark.parametrize("how", ["rm", "mv", "rm -rf"])
async def test_pump_drains_on_when_the_log_is_deleted_or_moved_under_a_flood(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A log removed (or moved) while rotating ended the pump: the worker hung in write."""
    logs = tmp_path / "logs"
    path = logs / "w-0.out.log"
    with RotatingLog(path, max_bytes=1 << 20, backups=2) as log:

        async def act() -> None:
            for _ in range(3):
                await _until_written(log, path, 64 * 1024)
                if how == "rm":
                    path.unlink()
                elif how == "mv":
                    path.rename(logs / f"w-0.out.log-{_}")
                else:
                    shutil.rmtree(logs)
                # Reopened at the next flush at most a second later; then written.
                await _until_written(log, path, 64 * 1024)
            await wait_until(lambda: backup_path(path, 1).exists())  # rotating again

        with caplog.at_level(logging.WARNING, logger="supervisor.output"):
            wrote, read, last = await _flood_with(tmp_path, log, act)
    assert read == wrote  # every byte drained: the worker never blocked for good
    assert path.read_bytes().endswith((f"line {last} ".ljust(50, ".") + "\n").encode())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_pump_counts_and_retries_a_log_that_cannot_be_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A log that fails is reported once, its loss counted; it works again when it can."""
    logs = tmp_path / "logs"
    path = logs / "w-0.out.log"
    with RotatingLog(path, max_bytes=1 << 20, backups=1, reopen_check_seconds=0) as log:

        async def act() -> None:
            await _until_written(log, path, 64 * 1024)
            shutil.rmtree(logs)
            logs.write_bytes(b"")  # a file where the directory was: no log can be opened
            await wait_until(lambda: bool(_records(caplog, logging.ERROR)))
            failed_at = log.written
            logs.unlink()
            await _until_written(log, path, 64 * 1024)
            assert log.written > failed_at

        with caplog.at_level(logging.INFO, logger="supervisor.output"):
            wrote, read, _ = await _flood_with(tmp_path, log, act)
    assert read == wrote
    assert len(_records(caplog, logging.ERROR)) == 1  # reported once, not per write
    (back,) = [r for r in _records(caplog, logging.WARNING) if r.levelno == logging.WARNING]
    lost = back.args[-1] if isinstance(back.args, tuple) else None
    assert isinstance(lost, int)
    assert 0 < lost < wrote


async def test_pump_says_a_full_log_works_again_only_once_bytes_reach_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An empty flush "succeeded" on a full disk: "works again" was said while still full."""
    path = Path("/dev/full")  # every write fails with ENOSPC, as on a full disk
    proc, fds = spawn("out_bytes.py", b"one\ntwo\n".hex(), "hold", stdin=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        with (
            caplog.at_level(logging.INFO, logger="supervisor.output"),
            RotatingLog(path, max_bytes=0, backups=0) as log,
            anyio.fail_after(10),
        ):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_pump_stdout, fds["stdout"], log, Recorder())
                await wait_until(lambda: bool(_records(caplog, logging.ERROR)))
                proc.stdin.close()  # EOF: the pump's last flushes find nothing to write
    finally:
        if not proc.stdin.closed:
            proc.stdin.close()
        for fd in fds.values():
            os.close(fd)
        await anyio.to_thread.run_sync(proc.wait)
    assert len(_records(caplog, logging.ERROR)) == 1
    assert not _records(caplog, logging.WARNING)[1:]  # nothing said after the error


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= level and r.name.endswith(".pump")]


async def test_pump_without_consumer_only_writes_the_log(tmp_path: Path) -> None:
    result = await capture(tmp_path, "out_lines.py", "1000", "stderr")
    assert result.totals == {"stdout": 0, "stderr": 51_000}
    assert result.logs["stderr"] == "".join(_line(i) + "\n" for i in range(1000)).encode()


def _start_pumps(
    fds: dict[Stream, int],
    log: RotatingLog,
    out: Recorder,
    ended: list[str],
    tg: TaskGroup,
) -> list[pump_module.Pump]:
    """A started pump per pipe of ``fds``, into one log; each appends its stream to ``ended``."""
    pumps = [
        pump_module.Pump(
            fd,
            process="w:0",
            stream=stream,
            log=log,
            consumer=out,
            max_line_bytes=2048,
            on_end=functools.partial(ended.append, stream),
        )
        for stream, fd in fds.items()
    ]
    for p in pumps:
        p.start(tg)
    return pumps


async def test_pump_fallback_for_other_backends_drains_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task per pipe used off asyncio (trio is not installed here), and the stop."""
    monkeypatch.setattr(
        pump_module,
        "call_when_readable",
        lambda fd, callback, tg: readable_module._TaskReader(fd, callback, tg),
    )
    proc, fds = spawn("out_alternate.py", "2", "4")
    out = Recorder()
    ended: list[str] = []
    try:
        with RotatingLog(tmp_path / "o.log", max_bytes=0, backups=0) as log:
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    pumps = _start_pumps(fds, log, out, ended, tg)
                    assert len(anyio.get_running_tasks()) >= 3  # a task per pipe here
    finally:
        for fd in fds.values():
            os.close(fd)
        await anyio.to_thread.run_sync(proc.wait)
    assert sorted(ended) == ["stderr", "stdout"]
    assert [p.total for p in pumps] == [8 << 20, 8 << 20]
    assert len(out.lines) == 2 * (8 << 20) // 1024
    assert (tmp_path / "o.log").stat().st_size == 16 << 20


async def test_pump_on_asyncio_holds_no_task_and_ends_once(tmp_path: Path) -> None:
    """Each pipe of a run held a task until EOF; a loop reader does the same work."""
    proc, fds = spawn("out_alternate.py", "1", "4")
    out = Recorder()
    ended: list[str] = []
    try:
        with RotatingLog(tmp_path / "o.log", max_bytes=0, backups=0) as log:
            async with anyio.create_task_group() as tg:
                before = len(anyio.get_running_tasks())
                pumps = _start_pumps(fds, log, out, ended, tg)
                assert len(anyio.get_running_tasks()) == before
                await wait_until(lambda: len(ended) == 2)
                for p in pumps:
                    p.stop()  # after the end: nothing more happens
    finally:
        for fd in fds.values():
            os.close(fd)
        await anyio.to_thread.run_sync(proc.wait)
    assert sorted(ended) == ["stderr", "stdout"]
    assert [p.total for p in pumps] == [4 << 20, 4 << 20]
    assert (tmp_path / "o.log").stat().st_size == 8 << 20


class _PieceMeter:
    """An output consumer that keeps no lines: it measures pieces and samples memory."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.baseline = self.me.memory_info().rss
        self.peak = self.baseline
        self.pieces = 0
        self.longest = 0
        self.total = 0

    def room(self, process: str) -> tuple[int, None]:
        return 1 << 30, None

    def deliver(self, chunk: OutputChunk) -> None:
        for piece in chunk.data.split(b"\n")[:-1]:
            self.pieces += 1
            self.longest = max(self.longest, len(piece))
            self.total += len(piece)
        if self.pieces % 64 == 0:
            self.peak = max(self.peak, self.me.memory_info().rss)


async def test_pump_200_mib_without_newline_stays_bounded(tmp_path: Path) -> None:
    """A child printing 200 MiB with no newline neither grows memory nor loses bytes."""
    meter = _PieceMeter()
    cap = 16 << 20  # the log rotates: 16 MiB on disk, not 200
    result = await capture(
        tmp_path,
        "out_noline.py",
        "200",
        consumers=(meter, None),
        read_logs=False,
        seconds=60,
        log_max_bytes=cap,
    )
    assert result.exit_code == 0
    out_path, _ = log_paths(tmp_path, "w:0")
    size = (200 << 20) // 3 * 3
    assert result.totals["stdout"] == size
    assert 0 < out_path.stat().st_size <= cap
    assert meter.total == size
    assert meter.longest == 65536
    # 200 MiB went through; what stayed in memory is a few pipe-sized buffers.
    assert meter.peak - meter.baseline < 64 << 20
