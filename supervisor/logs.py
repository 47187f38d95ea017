"""Per-process log files: buffered writing, rotation by size, tail and follow.

This module owns the files under ``log_dir`` (``{program}-{index}.out.log`` and
``.err.log`` plus their numbered backups) and reading them back. It does not own
reading the pipes (see ``pump``), nor deciding where ``log_dir`` is (``config``).

Writes are buffered in memory and reach the file in large ``write`` calls; the
pump flushes when a pipe goes idle so that ``tail`` sees recent output promptly.
A file deleted or moved away by someone else (``rm``, logrotate's default
"move and create") is noticed at a flush, at most ``REOPEN_CHECK_SECONDS``
late, and the path is opened again; a file truncated in place (``copytruncate``)
is noticed then too.
Writing happens on the event loop thread: appending to a page-cached file costs
microseconds, the same trade supervisord makes, and a thread hop per chunk would
cost more than the write (issue 3, "Speed and memory"). Reading back
(:func:`tail_lines`) is blocking and belongs in ``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, BinaryIO, NoReturn

import anyio
import anyio.abc

from supervisor.framing import LineFramer

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


logger = logging.getLogger(__name__)

DEFAULT_BUFFER_BYTES = 256 * 1024
_TAIL_BLOCK = 64 * 1024
_FOLLOW_READ = 1024 * 1024
_MAX_BACKUPS = 1000
REOPEN_CHECK_SECONDS = 1.0
"""How often a flush compares the open file with the path (one ``stat`` each)."""


def log_paths(log_dir: Path, process: str) -> tuple[Path, Path]:
    """Return the stdout and stderr log paths of a process.

    Args:
        log_dir: the directory of the log files.
        process: process name ``program:index``.

    Returns:
        ``(log_dir/program-index.out.log, log_dir/program-index.err.log)``.
    """
    stem = process.replace(":", "-")
    return log_dir / f"{stem}.out.log", log_dir / f"{stem}.err.log"


def backup_path(path: Path, n: int) -> Path:
    """Return the ``n``-th backup of ``path`` (``name.log.1`` is the newest)."""
    return path.with_name(f"{path.name}.{n}")


class RotatingLog:
    """One log file written through a buffer and rotated by size.

    Rotation shifts ``file`` → ``file.1`` → ``file.2`` … and drops the oldest
    beyond ``backups``. A file never exceeds ``max_bytes``: a write that would
    cross the limit is split after its last newline that still fits (a line is
    cut only when it alone is longer than the file limit). ``max_bytes = 0``
    disables rotation. Not thread-safe: one writer, the event loop.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        backups: int,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        reopen_check_seconds: float = REOPEN_CHECK_SECONDS,
    ) -> None:
        """Open (append to) the log file, creating its directory if needed.

        Args:
            path: the log file.
            max_bytes: rotate before the file would exceed this size; 0 never rotates.
            backups: how many rotated files to keep (0: truncate on rotation).
            buffer_bytes: bytes held in memory before a write reaches the file.
            reopen_check_seconds: the least time between two checks (at a flush)
                that the path still names the open file.

        Raises:
            ValueError: for a negative size, count or a buffer smaller than 1.
            OSError: when the file cannot be opened.
        """
        if max_bytes < 0 or backups < 0 or buffer_bytes < 1:
            raise ValueError(
                f"log {str(path)!r}: max_bytes and backups must be >= 0 and buffer_bytes >= 1,"
                f" got {max_bytes!r}, {backups!r}, {buffer_bytes!r}"
            )
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._buffer_bytes = buffer_bytes
        self._reopen_check_seconds = reopen_check_seconds
        self._buf = bytearray()
        self._file: BinaryIO | None = self._open()
        self._size = os.fstat(self._file.fileno()).st_size
        self._checked_at = time.monotonic()
        self._reopen_failed = False

    def _open(self) -> BinaryIO:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return open(self.path, "ab", buffering=0)

    @property
    def size(self) -> int:
        """Bytes in the current file, counting what is still buffered."""
        return self._size + len(self._buf)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._file is None

    def write(self, data: bytes | bytearray | memoryview, *, flush: bool = False) -> None:
        """Append bytes, rotating first when they would cross ``max_bytes``.

        Args:
            data: the bytes (copied or written before this returns).
            flush: also write out the buffer now; with an empty buffer the
                data goes straight to the file without being copied.

        Raises:
            ValueError: when the log is closed.
            OSError: when the file cannot be written or rotated.
        """
        view = memoryview(data).cast("B")
        if flush:
            self._reopen_if_moved()
        if self.max_bytes and self.size + len(view) > self.max_bytes:
            self._write_rotating(view)
        elif flush and not self._buf:
            self._write_through(view)
            return
        else:
            self._append(view)
        if flush:
            self.flush()

    def _append(self, view: memoryview) -> None:
        if len(self._buf) + len(view) <= self._buffer_bytes:
            self._buf += view
            return
        self.flush()
        if len(view) >= self._buffer_bytes:
            self._write_through(view)  # big chunk: no copy into the buffer
        else:
            self._buf += view

    def _write_rotating(self, view: memoryview) -> None:
        start = 0
        while start < len(view):
            room = self.max_bytes - self.size
            if len(view) - start <= room:
                self._append(view[start:])
                return
            cut = bytes(view[start : start + room]).rfind(b"\n") + 1
            if cut == 0 and self.size == 0:
                cut = room  # one line longer than a whole file: cut it
            if cut:
                self._append(view[start : start + cut])
                start += cut
            self.rotate()

    def _write_through(self, view: memoryview) -> None:
        file = self._checked_file()
        while len(view):
            written = file.write(view)
            if written is None:  # not on a regular file, but BinaryIO allows it
                raise BlockingIOError(f"log {str(self.path)!r}: write would block")
            self._size += written
            view = view[written:]

    def _checked_file(self) -> BinaryIO:
        if self._file is None:
            raise ValueError(f"log {str(self.path)!r} is closed")
        return self._file

    def flush(self) -> None:
        """Write what is buffered to the file (one ``write`` call, normally).

        First, at most every ``REOPEN_CHECK_SECONDS``, open the path again if
        the file was deleted or moved away.
        """
        self._reopen_if_moved()
        if self._buf:
            pending = self._buf
            self._buf = bytearray()
            self._write_through(memoryview(pending))

    def _reopen_if_moved(self) -> None:
        """Reopen the path when it no longer names the open file (rate-limited).

        Also takes the file's size again, so a truncation in place does not make
        the next rotation come early. If the path cannot be opened, writing goes
        on into the old file and the next check tries again.
        """
        now = time.monotonic()
        if now - self._checked_at < self._reopen_check_seconds or self._file is None:
            return
        self._checked_at = now
        opened = os.fstat(self._file.fileno())
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            named = None
        if named is not None and (named.st_ino, named.st_dev) == (opened.st_ino, opened.st_dev):
            self._size = opened.st_size
            return
        try:
            file = self._open()
        except OSError as exc:
            if not self._reopen_failed:
                logger.warning("log %s was moved away and cannot be reopened: %s", self.path, exc)
            self._reopen_failed = True
            return
        self._file.close()
        self._file = file
        self._size = os.fstat(file.fileno()).st_size
        self._reopen_failed = False
        logger.info("log %s was deleted or moved away: reopened", self.path)

    def rotate(self) -> None:
        """Flush, then shift the file to ``.1`` (and older backups one up)."""
        self.flush()
        self._checked_file().close()
        self._file = None
        if self.backups:
            for n in range(self.backups - 1, 0, -1):
                older = backup_path(self.path, n)
                if older.exists():
                    os.replace(older, backup_path(self.path, n + 1))
            os.replace(self.path, backup_path(self.path, 1))
        else:
            self.path.unlink(missing_ok=True)
        self._file = self._open()
        self._size = 0
        logger.debug("rotated log %s", self.path)

    def close(self) -> None:
        """Flush and close the file; idempotent."""
        if self._file is None:
            return
        try:
            self.flush()
        finally:
            self._file.close()
            self._file = None

    def __enter__(self) -> RotatingLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tail_lines(path: Path, n: int, *, max_line_bytes: int) -> list[str]:
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

    Returns:
        Up to ``n`` decoded lines (invalid UTF-8 replaced), oldest first.
    """
    if n <= 0:
        return []
    budget = n * (max_line_bytes + 1)
    blocks: list[bytes] = []  # newest first
    newlines = 0
    for index in range(_MAX_BACKUPS + 1):
        file = backup_path(path, index) if index else path
        try:
            f = open(file, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            if index:
                break  # backups are numbered without gaps
            continue
        with f:
            end = f.seek(0, os.SEEK_END)
            while end > 0 and newlines <= n and budget > 0:
                start = max(0, end - _TAIL_BLOCK)
                f.seek(start)
                block = f.read(end - start)
                blocks.append(block)
                newlines += block.count(b"\n")
                budget -= len(block)
                end = start
        if newlines > n or budget <= 0:
            break
    return _frame_all(b"".join(reversed(blocks)), max_line_bytes)[-n:]


def _frame_all(data: bytes, max_line_bytes: int) -> list[str]:
    framer = LineFramer(max_line_bytes)
    lines, _ = framer.feed(data, len(data) + 1)
    last, _ = framer.flush(1)
    return lines + last


def _open_or_none(path: Path) -> BinaryIO | None:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _successor(path: Path, inode: int, *, is_unlinked: bool) -> Path | None:
    """The file written after the one with ``inode``, now a backup of ``path``.

    Returns None when it cannot tell yet: the writer (another thread) may be
    in the middle of shifting the backups, or the file was moved away under
    another name (see ``_Followed``); look again on the next poll.
    """
    newer = path
    for n in range(1, _MAX_BACKUPS + 1):
        try:
            if os.stat(backup_path(path, n)).st_ino == inode:
                return newer
        except FileNotFoundError:
            break
        newer = backup_path(path, n)
    # Ours was dropped from the backups (the follower fell behind): lines are
    # lost; go on with the oldest file left.
    return newer if is_unlinked else None


class _Followed:
    """The file a follower reads, swapped for the new one after a rotation.

    A file moved away under a name that is not a backup's (logrotate's
    ``name-20261124``) is read until ``moved_grace_seconds`` after it was first
    seen moved, by which time the writer has reopened the path (it checks every
    ``REOPEN_CHECK_SECONDS``); then the follower goes on with the path.
    """

    def __init__(self, path: Path, moved_grace_seconds: float) -> None:
        self.path = path
        self.file: BinaryIO | None = None
        self._moved_grace_seconds = moved_grace_seconds
        self._moved_at: float | None = None

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
        data = self.file.read(_FOLLOW_READ)
        if data:
            return data
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return b""
        inode = os.fstat(self.file.fileno()).st_ino
        if current.st_ino != inode:
            # Rotated. Bytes may have reached our file between the read above
            # and the rotation: take them first, then go on with the file
            # written after ours (a backup if several rotations went by).
            data = self.file.read(_FOLLOW_READ)
            if data:
                return data
            unlinked = os.fstat(self.file.fileno()).st_nlink == 0
            successor = _successor(self.path, inode, is_unlinked=unlinked) or self._moved_away()
            if successor is None:
                return b""
            self.close()
            self.file = _open_or_none(successor)
            return self.read()
        if current.st_size < self.file.tell():
            self.file.seek(0)  # truncated in place
        return b""

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


async def follow(
    path: Path,
    deliver: Callable[[list[str]], None],
    *,
    max_line_bytes: int,
    poll_seconds: float = 0.25,
    moved_grace_seconds: float = 2 * REOPEN_CHECK_SECONDS,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Deliver the lines appended to a log from now on, across rotations.

    Polls the file (through a worker thread, every ``poll_seconds`` while it
    is idle, at once while it grows) rather than hooking the pump, so a
    follower never slows the pipe it watches. After a rotation it reads the
    rest of its file, then the files written after it, in order. Runs until
    cancelled; the file is closed on the way out.

    Args:
        path: the current log file (it may not exist yet).
        deliver: called on the event loop with each batch of complete lines.
        max_line_bytes: the piece size for long lines.
        poll_seconds: the pause between checks of an idle file.
        moved_grace_seconds: how long a file moved away under another name is
            still read before the follower goes on with the path.
        task_status: started once positioned at the end, with ``tg.start``.
    """
    framer = LineFramer(max_line_bytes)
    followed = _Followed(path, moved_grace_seconds)
    try:
        await anyio.to_thread.run_sync(followed.start)
        task_status.started()
        while True:
            data = await anyio.to_thread.run_sync(followed.read)
            if not data:
                await anyio.sleep(poll_seconds)
                continue
            lines, _ = framer.feed(data, len(data) + 1)
            if lines:
                deliver(lines)
    finally:
        followed.close()
