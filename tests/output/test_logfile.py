"""Tests of the log files: buffering, rotation, tail and watching."""

from __future__ import annotations

import functools
import gc
import os
import shutil
from pathlib import PurePath
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest

from supervisor.output.logfile import RotatingLog, backup_path, log_paths
from supervisor.output.logread import _WatchedLog, log_mark, tail_lines, watch_log
from tests._wait import wait_until

if TYPE_CHECKING:
    from pathlib import Path


def _lines(start: int, stop: int) -> bytes:
    return b"".join(b"entry %05d\n" % i for i in range(start, stop))  # 12 bytes each


def test_log_paths_name_each_process_and_stream(tmp_path: Path) -> None:
    assert log_paths(tmp_path, "scraper:2") == (
        tmp_path / "scraper-2.out.log",
        tmp_path / "scraper-2.err.log",
    )


def test_log_buffers_until_flush_and_close_then_appends(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "a.log"
    log = RotatingLog(path, max_bytes=0, backups=0, buffer_bytes=1000)
    log.write(b"one\n")
    assert path.read_bytes() == b""  # buffered: no syscall per line
    log.write(b"two\n", flush=True)
    assert path.read_bytes() == b"one\ntwo\n"
    log.write(b"x" * 999)
    log.write(b"y" * 2)  # the buffer would overflow: written out first
    assert path.stat().st_size == 8 + 999
    log.close()
    log.close()  # idempotent
    assert path.read_bytes() == b"one\ntwo\n" + b"x" * 999 + b"yy"
    with RotatingLog(path, max_bytes=0, backups=0) as again:
        assert again.size == 1009
        again.write(b"more")
    assert path.read_bytes().endswith(b"yymore")
    with pytest.raises(ValueError, match="is closed"):
        log.write(b"z" * 5000)


def test_log_rotates_by_size_keeping_backups_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.log"
    with RotatingLog(path, max_bytes=1000, backups=2, buffer_bytes=64) as log:
        data = _lines(0, 400)  # 4800 bytes: about 5 files' worth
        for start in range(0, len(data), 700):
            log.write(data[start : start + 700])
    files = [backup_path(path, 2), backup_path(path, 1), path]
    assert not backup_path(path, 3).exists()
    contents = [f.read_bytes() for f in files]
    assert all(len(c) <= 1000 for c in contents)
    assert all(c.endswith(b"\n") for c in contents)
    assert data.endswith(b"".join(contents))
    assert len(b"".join(contents)) >= 2000  # the backups are full files


def test_log_cuts_a_line_longer_than_a_file(tmp_path: Path) -> None:
    path = tmp_path / "l.log"
    with RotatingLog(path, max_bytes=100, backups=5) as log:
        log.write(b"a\n" + b"L" * 250 + b"\nz\n")
    chunks = [backup_path(path, n).read_bytes() for n in (3, 2, 1)] + [path.read_bytes()]
    assert chunks == [b"a\n", b"L" * 100, b"L" * 100, b"L" * 50 + b"\nz\n"]
    assert not backup_path(path, 4).exists()


def test_log_without_backups_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    with RotatingLog(path, max_bytes=100, backups=0) as log:
        log.write(b"a" * 60 + b"\n")
        log.write(b"b" * 60 + b"\n")
    assert path.read_bytes() == b"b" * 60 + b"\n"
    assert not backup_path(path, 1).exists()


def test_log_rejects_negative_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes and backups must be >= 0"):
        RotatingLog(tmp_path / "n.log", max_bytes=-1, backups=0)


def test_tail_lines_reads_the_end_and_continues_into_backups(tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    with RotatingLog(path, max_bytes=1200, backups=3) as log:
        log.write(_lines(0, 205))  # 2460 bytes: two full files and 5 lines
    assert path.read_bytes() == _lines(200, 205)
    assert tail_lines(path, 3, max_line_bytes=100) == [f"entry {i:05d}" for i in (202, 203, 204)]
    got = tail_lines(path, 30, max_line_bytes=100)
    assert got == [f"entry {i:05d}" for i in range(175, 205)]
    assert tail_lines(path, 1000, max_line_bytes=100) == [f"entry {i:05d}" for i in range(205)]


def test_tail_lines_of_missing_or_partial_files(tmp_path: Path) -> None:
    assert tail_lines(tmp_path / "none.log", 5, max_line_bytes=100) == []
    path = tmp_path / "p.log"
    path.write_bytes(b"a\nb\nno newline yet")
    assert tail_lines(path, 2, max_line_bytes=100) == ["b", "no newline yet"]
    assert tail_lines(path, 0, max_line_bytes=100) == []


def test_tail_lines_stays_bounded_on_a_huge_line(tmp_path: Path) -> None:
    path = tmp_path / "h.log"
    path.write_bytes(b"head\n" + b"H" * (8 << 20) + b"\nlast\n")
    got = tail_lines(path, 3, max_line_bytes=1000)
    assert got[-1] == "last"
    assert len(got) == 3
    assert all(0 < len(piece) <= 1000 and set(piece) == {"H"} for piece in got[:2])


def test_tail_lines_between_marks_across_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "m.log"
    assert log_mark(path) is None
    with RotatingLog(path, max_bytes=1200, backups=3) as log:
        log.write(_lines(0, 50), flush=True)
        since = log_mark(path)
        log.write(_lines(50, 120), flush=True)  # rotates
        until = log_mark(path)
        log.write(_lines(120, 205), flush=True)  # rotates: ``until``'s file is a backup now
    assert since is not None
    assert until is not None
    got = tail_lines(path, 1000, max_line_bytes=100, since=since, until=until)
    assert got == [f"entry {i:05d}" for i in range(50, 120)]
    got = tail_lines(path, 3, max_line_bytes=100, since=since, until=until)
    assert got == [f"entry {i:05d}" for i in (117, 118, 119)]
    assert tail_lines(path, 5, max_line_bytes=100, since=until, until=until) == []
    gone = type(until)(inode=-1, size=0)
    assert tail_lines(path, 2, max_line_bytes=100, until=gone) == ["entry 00203", "entry 00204"]


async def test_watch_log_delivers_new_lines_across_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "f.log"
    want = [f"entry {i:05d}" for i in range(100, 130)]
    got = _Collected(len(want))
    with RotatingLog(path, max_bytes=240, backups=2) as log:
        log.write(_lines(0, 100), flush=True)  # before watching: not delivered
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                await tg.start(
                    functools.partial(watch_log, max_line_bytes=100, poll_seconds=0.01), path, got
                )
                for i in range(100, 130, 5):  # rotates every 20 lines
                    log.write(_lines(i, i + 5), flush=True)
                    await anyio.lowlevel.checkpoint()
                await got.arrived.wait()
                tg.cancel_scope.cancel()
    assert got.lines == want


def test_watcher_counts_files_rotation_deleted_before_it_read_them(tmp_path: Path) -> None:
    """A watcher behind rotation was told nothing of the lines it lost."""
    path = tmp_path / "s.log"
    watched = _WatchedLog(path, moved_grace_seconds=0)
    with RotatingLog(path, max_bytes=0, backups=1, reopen_check_seconds=0) as log:
        try:
            watched.start()
            log.write(_lines(0, 10), flush=True)
            log.rotate()  # ours goes to .1
            log.write(_lines(10, 20), flush=True)
            assert watched.read() == _lines(0, 10)  # and it sees the new file
            log.rotate()  # ours is deleted (we keep it open), the second is .1
            log.write(_lines(20, 30), flush=True)
            log.rotate()  # the second is deleted unread
            log.write(_lines(30, 35), flush=True)
            assert watched.read() == _lines(20, 30)  # the oldest file left
            assert watched.skipped_bytes == len(_lines(10, 20))
            watched.skipped_bytes = 0
            assert watched.read() == _lines(30, 35)  # an ordinary rotation loses nothing
            assert watched.skipped_bytes == 0
        finally:
            watched.close()


def test_watcher_tells_of_a_lost_file_after_the_rest_of_its_own(tmp_path: Path) -> None:
    """CI: a loss seen while the watcher was mid-file was counted before that file's end."""
    path = tmp_path / "s.log"
    watched = _WatchedLog(path, moved_grace_seconds=0)
    path.touch()
    try:
        watched.start()
        own = _lines(0, 30_000)  # more than one read
        with open(path, "ab") as f:
            f.write(own)
        path.unlink()  # rotated away without backups; we keep it open
        path.write_bytes(_lines(30_000, 30_010))
        first = watched.read()  # notes the newer file's size
        assert 0 < len(first) < len(own)
        # The newer file is deleted unread and the next one gets its inode:
        # from outside, the same inode, smaller.
        with open(path, "r+b") as f:
            f.truncate(0)
            f.write(_lines(30_020, 30_025))
        assert watched.read() == own[len(first) :]
        assert watched.skipped_bytes == 0  # nothing is lost before our own end
        assert watched.read() == _lines(30_020, 30_025)
        assert watched.skipped_bytes == len(_lines(30_000, 30_010))
    finally:
        watched.close()


def test_log_reopens_a_file_moved_away_or_deleted(tmp_path: Path) -> None:
    """Logrotate's "move and create", or an ``rm``, no longer loses the log."""
    path = tmp_path / "m.log"
    moved = tmp_path / "m.log-20261124"
    with RotatingLog(path, max_bytes=0, backups=0, reopen_check_seconds=0) as log:
        log.write(b"one\n", flush=True)
        path.rename(moved)
        log.write(b"two\n", flush=True)
        assert moved.read_bytes() == b"one\n"
        assert path.read_bytes() == b"two\n"
        path.unlink()
        log.write(b"three\n")
        log.flush()
        assert path.read_bytes() == b"three\n"
        assert tail_lines(path, 5, max_line_bytes=100) == ["three"]
        path.rename(moved)
        path.write_bytes(b"created\n")  # "create": logrotate makes the new file itself
        log.write(b"four\n", flush=True)
        assert path.read_bytes() == b"created\nfour\n"


def test_log_rotates_on_after_its_file_or_directory_was_deleted(tmp_path: Path) -> None:
    """A rotation that found its file deleted left the log closed for good."""
    logs = tmp_path / "logs"
    path = logs / "r.log"
    with RotatingLog(path, max_bytes=120, backups=2, reopen_check_seconds=3600) as log:
        log.write(_lines(0, 5), flush=True)
        path.unlink()
        log.write(_lines(5, 15), flush=True)  # crosses 120 bytes: rotates a deleted file
        assert path.read_bytes() == _lines(10, 15)
        shutil.rmtree(logs)
        log.write(_lines(15, 25), flush=True)  # rotates: the directory is made again
        assert path.read_bytes() == _lines(20, 25)
        assert not log.closed


def test_log_recreates_a_deleted_directory_private(tmp_path: Path) -> None:
    """After ``rm -rf state/logs`` the directory came back with mode 0755."""
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o700)
    path = logs / "d.log"
    old = os.umask(0o022)  # the usual umask, under which mkdir makes 0755
    try:
        with RotatingLog(path, max_bytes=0, backups=0, reopen_check_seconds=0) as log:
            path.unlink()
            logs.rmdir()
            log.write(b"back\n", flush=True)
            assert path.read_bytes() == b"back\n"
    finally:
        os.umask(old)
    assert logs.stat().st_mode & 0o777 == 0o700


def test_log_resize_applies_to_the_next_write(tmp_path: Path) -> None:
    """A reload's new log_max_bytes and log_backups reach the open file."""
    path = tmp_path / "s.log"
    with RotatingLog(path, max_bytes=10_000, backups=0) as log:
        log.write(_lines(0, 50))  # 600 bytes
        log.resize(max_bytes=240, backups=3)
        log.write(_lines(50, 100))
    # The file already over the new size is rotated whole, the rest cut to it.
    sizes = [backup_path(path, n).stat().st_size for n in (3, 2, 1)] + [path.stat().st_size]
    assert sizes == [600, 240, 240, 120]
    with pytest.raises(ValueError, match="max_bytes and backups must be >= 0"):
        log.resize(max_bytes=100, backups=-1)


def test_log_checks_the_path_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    with RotatingLog(path, max_bytes=0, backups=0, reopen_check_seconds=3600) as log:
        path.unlink()
        log.write(b"to the deleted file\n", flush=True)  # no stat on every write
        assert not path.exists()


def test_log_takes_a_truncation_in_place_into_account(tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    with RotatingLog(path, max_bytes=100, backups=1, reopen_check_seconds=0) as log:
        log.write(b"x" * 89 + b"\n", flush=True)
        os.truncate(path, 0)  # copytruncate
        log.write(b"y" * 19 + b"\n", flush=True)
        assert log.size == 20
    assert not backup_path(path, 1).exists()  # no early rotation


async def test_watch_log_goes_on_with_the_path_after_a_move_away(tmp_path: Path) -> None:
    path = tmp_path / "g.log"
    want = [f"entry {i:05d}" for i in range(0, 30)]
    got = _Collected(len(want))
    follow_fast = functools.partial(
        watch_log, max_line_bytes=100, poll_seconds=0.01, moved_grace_seconds=0
    )
    with RotatingLog(path, max_bytes=0, backups=0, reopen_check_seconds=0) as log:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                await tg.start(follow_fast, path, got)
                log.write(_lines(0, 10), flush=True)
                await wait_until(lambda: len(got.lines) >= 10)
                path.rename(tmp_path / "g.log-old")
                log.write(_lines(10, 20), flush=True)  # reopened: a new file
                await wait_until(lambda: len(got.lines) >= 20)
                path.unlink()
                log.write(_lines(20, 30), flush=True)
                await got.arrived.wait()
                tg.cancel_scope.cancel()
    assert got.lines == want


class _Collected:
    """A watcher's ``deliver``: keeps the lines; ``arrived`` once ``count`` came."""

    def __init__(self, count: int) -> None:
        self.lines: list[str] = []
        self.dropped = 0
        self.arrived = anyio.Event()
        self._count = count

    def __call__(self, lines: list[str], dropped: int) -> None:
        self.lines.extend(lines)
        self.dropped += dropped
        if len(self.lines) >= self._count:
            self.arrived.set()


def test_log_is_never_written_through_a_link(tmp_path: Path) -> None:
    """A link planted in the log directory would make dsup append output to its target."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    path = tmp_path / "l.log"
    path.symlink_to(victim)
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        RotatingLog(path, max_bytes=0, backups=0)
    path.unlink()
    with RotatingLog(path, max_bytes=0, backups=0, reopen_check_seconds=0) as log:
        path.unlink()
        path.symlink_to(victim)  # planted where the deleted log was
        log.write(b"output\n", flush=True)  # the reopen refuses the link
    assert victim.read_bytes() == b"precious\n"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    logs = tmp_path / "logs"
    logs.symlink_to(elsewhere)  # the log directory itself replaced by a link
    with pytest.raises(NotADirectoryError):  # O_DIRECTORY | O_NOFOLLOW on a link
        RotatingLog(logs / "l.log", max_bytes=0, backups=0)
    assert list(elsewhere.iterdir()) == []


def test_log_at_rest_holds_no_path_object(tmp_path: Path) -> None:
    """A Path keeps its parts besides its text: about 0.3 KB more per log, two logs a process."""
    with RotatingLog(tmp_path / "quiet.log", max_bytes=100, backups=1) as log:
        assert not [o for o in gc.get_referents(log) if isinstance(o, PurePath)]
        assert log.path == tmp_path / "quiet.log"
