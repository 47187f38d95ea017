"""Reading log files back: the last lines (``tail``) and new lines as written, across rotations.

Reads run in a thread and a watcher polls the file rather than hook the pump, so reading a log
never slows the pipe that writes it.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, NoReturn

import anyio
import anyio.abc

from supervisor.output.framing import ChunkFramer, decode_lines
from supervisor.output.logfile import REOPEN_CHECK_SECONDS, backup_path

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

_TAIL_BLOCK = 64 * 1024
_WATCH_READ = 256 * 1024
_GUESS_LINE_BYTES = 80  # for a drop count before any line was read
_MAX_BACKUPS = 1000


@dataclass(frozen=True, slots=True)
class LogMark:
    """Where a log file ended at one moment: its inode and size."""

    inode: int
    size: int


def log_mark(path: Path) -> LogMark | None:
    """Where ``path`` ends now; None when it does not exist.

    One ``stat``, as cheap as the log writes that stay on the event loop.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return LogMark(st.st_ino, st.st_size)


def tail_lines(
    path: Path,
    n: int,
    *,
    max_line_bytes: int,
    since: LogMark | None = None,
    until: LogMark | None = None,
) -> list[str]:
    """Return the last ``n`` lines of a log, reading backwards from its end.

    Continues into the backups (``.1``, ``.2`` …) when the current file holds
    fewer than ``n`` lines. Reads at most about ``n * (max_line_bytes + 1)``
    bytes, so a file with a huge line costs no more than the lines asked for;
    lines longer than ``max_line_bytes`` come back in pieces, as from the pump.
    Blocking: call it through ``anyio.to_thread.run_sync``.

    Args:
        path: the current log file (missing files count as empty).
        n: how many lines to return.
        max_line_bytes: the piece size for long lines.
        since: only what was written after this mark (e.g. a run's start).
        until: only what was written before this mark, wherever rotation has
            moved its file since; the whole log when that file is gone.

    Returns:
        Up to ``n`` decoded lines (invalid UTF-8 replaced), oldest first.
    """
    if n <= 0:
        return []
    budget = n * (max_line_bytes + 1)
    blocks: list[bytes] = []  # newest first
    newlines = 0
    reached = until is None  # the file ``until`` marks, or an older one, is being read
    for index in range(_MAX_BACKUPS + 1):
        file = backup_path(path, index) if index else path
        try:
            f = open(file, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            if index:
                break  # backups are numbered without gaps
            continue
        with f:
            inode = os.fstat(f.fileno()).st_ino
            end = f.seek(0, os.SEEK_END)
            if until is not None and not reached:
                if inode != until.inode:
                    continue  # written after the mark
                reached, end = True, min(end, until.size)
            first = since is not None and inode == since.inode
            floor = since.size if since is not None and first else 0
            while end > floor and newlines <= n and budget > 0:
                start = max(floor, end - _TAIL_BLOCK)
                f.seek(start)
                block = f.read(end - start)
                blocks.append(block)
                newlines += block.count(b"\n")
                budget -= len(block)
                end = start
        if first or newlines > n or budget <= 0:
            break
    if not reached:
        return tail_lines(path, n, max_line_bytes=max_line_bytes, since=since)
    return _frame_all(b"".join(reversed(blocks)), max_line_bytes)[-n:]


def _frame_all(data: bytes, max_line_bytes: int) -> list[str]:
    framer = ChunkFramer(max_line_bytes)
    lines = framer.feed(data, sys.maxsize).data
    return decode_lines(lines + framer.flush(sys.maxsize).data)


def _open_or_none(path: Path) -> BinaryIO | None:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _successor(path: Path, inode: int, *, is_unlinked: bool) -> Path | None:
    """The file written after the one with ``inode``, now a backup of ``path``.

    Returns None when it cannot tell yet: the writer (another thread) may be
    in the middle of shifting the backups, or the file was moved away under
    another name (see ``_WatchedLog``); look again on the next poll. When ours
    was dropped from the backups (the watcher fell behind), returns the
    oldest file left: what was between is lost (``_WatchedLog`` counts it).
    """
    newer = path
    for n in range(1, _MAX_BACKUPS + 1):
        try:
            if os.stat(backup_path(path, n)).st_ino == inode:
                return newer
        except FileNotFoundError:
            break
        newer = backup_path(path, n)
    return newer if is_unlinked else None


def _inodes(path: Path) -> set[int]:
    """The inodes of ``path`` and of its backups, as they are now."""
    found: set[int] = set()
    for n in range(_MAX_BACKUPS + 1):
        try:
            found.add(os.stat(backup_path(path, n) if n else path).st_ino)
        except FileNotFoundError:
            if n:
                break
    return found


class _WatchedLog:
    """The file a watcher reads, swapped for the new one after a rotation.

    A file moved away under a name that is not a backup's (logrotate's
    ``name-20261124``) is read until ``moved_grace_seconds`` after it was first
    seen moved, by which time the writer has reopened the path (it checks every
    ``REOPEN_CHECK_SECONDS``); then the watcher goes on with the path.

    Every read also notes the files seen at the path after ours (inode and
    size). When the watcher falls so far behind that rotation deleted some
    of them before it got there, their sizes add up in ``skipped_bytes`` once
    the watcher moves past its own file, so the count comes after the lines
    that preceded the loss: a lower bound, as a file rotated in and out
    between two reads is never seen.
    """

    def __init__(self, path: Path, moved_grace_seconds: float) -> None:
        self.path = path
        self.file: BinaryIO | None = None
        self.skipped_bytes = 0
        self._moved_grace_seconds = moved_grace_seconds
        self._moved_at: float | None = None
        self._newer: dict[int, int] = {}  # inode -> size, oldest first
        self._lost = 0  # bytes of newer files deleted unread, told on moving on

    def start(self) -> None:
        """Open the file (if it exists) positioned at its end."""
        self.file = _open_or_none(self.path)
        if self.file is not None:
            self.file.seek(0, os.SEEK_END)

    def read(self) -> bytes:
        """Return new bytes, following a rotation to the next file."""
        if self.file is None:
            self.file = _open_or_none(self.path)
            if self.file is None:
                return b""
        data = self.file.read(_WATCH_READ)
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return data
        inode = os.fstat(self.file.fileno()).st_ino
        if current.st_ino != inode:
            self._note_newer(current.st_ino, current.st_size)
        if data:
            return data
        if current.st_ino != inode:
            # Rotated. Bytes may have reached our file between the read above
            # and the rotation: take them first, then go on with the file
            # written after ours (a backup if several rotations went by).
            data = self.file.read(_WATCH_READ)
            if data:
                return data
            unlinked = os.fstat(self.file.fileno()).st_nlink == 0
            successor = _successor(self.path, inode, is_unlinked=unlinked) or self._moved_away()
            if successor is None:
                return b""
            self.close()
            self.file = _open_or_none(successor)
            self._skip_to(None if self.file is None else os.fstat(self.file.fileno()).st_ino)
            return self.read()
        if current.st_size < self.file.tell():
            self.file.seek(0)  # truncated in place
        return b""

    def _note_newer(self, inode: int, size: int) -> None:
        known = self._newer.pop(inode, None)
        if known is not None and size < known:
            self._lost += known  # deleted unread; a new file got its inode
        self._newer[inode] = size
        if len(self._newer) > _MAX_BACKUPS + 1:  # more files than are ever kept
            oldest = next(iter(self._newer))
            self._lost += self._newer.pop(oldest)

    def _skip_to(self, inode: int | None) -> None:
        """Forget the files seen before ``inode`` (None: gone); count those deleted unread."""
        self.skipped_bytes += self._lost
        self._lost = 0
        if not self._newer:
            return
        existing = _inodes(self.path)
        if inode in self._newer:
            older = [*itertools.takewhile(lambda i: i != inode, self._newer), inode]
        else:
            older = [i for i in self._newer if i not in existing]
        for i in older:
            size = self._newer.pop(i)
            if i not in existing:
                self.skipped_bytes += size

    def _moved_away(self) -> Path | None:
        """The path, once the file has been seen moved for the grace time."""
        now = time.monotonic()
        if self._moved_at is None:
            self._moved_at = now
        if now - self._moved_at < self._moved_grace_seconds:
            return None
        return self.path

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self._moved_at = None


async def watch_log(
    path: Path,
    deliver: Callable[[list[str], int], None],
    *,
    max_line_bytes: int,
    room: Callable[[], int] | None = None,
    poll_seconds: float = 0.25,
    moved_grace_seconds: float = 2 * REOPEN_CHECK_SECONDS,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Deliver the lines appended to a log from now on, across rotations.

    Polls the file (through a worker thread, every ``poll_seconds`` while it
    is idle, at once while it grows) rather than hooking the pump, so a
    watcher never slows the pipe it watches. After a rotation it reads the
    rest of its file, then the files written after it, in order. Lines the
    consumer has no room for are counted (not decoded when it has none); so are, estimated from
    the bytes and the lines read so far, those of files rotation deleted
    before the watcher got to them. Runs until cancelled; the file is closed
    on the way out.

    Args:
        path: the current log file (it may not exist yet).
        deliver: called on the event loop with each batch of complete lines
            and the count of lines missed after them (possibly no lines).
        max_line_bytes: the piece size for long lines.
        room: how many lines the consumer takes now (None: no limit).
        poll_seconds: the pause between checks of an idle file.
        moved_grace_seconds: how long a file moved away under another name is
            still read before the watcher goes on with the path.
        task_status: started once positioned at the end, with ``tg.start``.
    """
    framer = ChunkFramer(max_line_bytes)
    watched = _WatchedLog(path, moved_grace_seconds)
    seen_bytes = seen_lines = 0
    try:
        await anyio.to_thread.run_sync(watched.start)
        task_status.started()
        while True:
            data = await anyio.to_thread.run_sync(watched.read)
            if watched.skipped_bytes:
                deliver([], _lines_in(watched.skipped_bytes, seen_bytes, seen_lines))
                watched.skipped_bytes = 0
            if not data:
                await anyio.sleep(poll_seconds)
                continue
            lines, dropped = _frame(framer, data, None if room is None else room())
            seen_bytes += len(data)
            seen_lines += len(lines) + dropped
            if lines:
                deliver(lines, 0)
            if dropped:
                deliver([], dropped)
    finally:
        watched.close()


def _frame(framer: ChunkFramer, data: bytes, room: int | None) -> tuple[list[str], int]:
    """The lines of ``data`` that fit ``room`` lines (None: all) and how many did not."""
    if room is not None and room <= 0:
        return [], framer.feed(data, 0, count=True).dropped_lines
    lines = decode_lines(framer.feed(data, sys.maxsize).data)
    if room is None or len(lines) <= room:
        return lines, 0
    return lines[:room], len(lines) - room


def _lines_in(size: int, seen_bytes: int, seen_lines: int) -> int:
    """About how many lines ``size`` bytes held, going by the lines seen so far."""
    per_line = seen_bytes / seen_lines if seen_lines else _GUESS_LINE_BYTES
    return max(1, round(size / per_line))
