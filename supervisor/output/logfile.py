"""Per-process log files: their names, buffered writing and rotation by size.

A file moved away or truncated by logrotate is noticed at a flush and opened again. Writes stay
on the event loop: a page-cached append costs less than a hop to a thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)

DEFAULT_BUFFER_BYTES = 256 * 1024
REOPEN_CHECK_SECONDS = 1.0
"""How often a flush compares the open file with the path (one ``stat`` each)."""
LOG_DIR_MODE = 0o700
"""The mode of a log directory dsup creates: output may hold secrets."""
LOG_FILE_MODE = 0o600
"""The mode of a log file dsup creates."""


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

    __slots__ = (
        "_buf",
        "_buffer_bytes",
        "_checked_at",
        "_closed",
        "_file",
        "_path",
        "_reopen_check_seconds",
        "_reopen_failed",
        "_size",
        "backups",
        "max_bytes",
        "written",
    )

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
        if buffer_bytes < 1:
            raise ValueError(f"log {str(path)!r}: buffer_bytes must be >= 1, got {buffer_bytes!r}")
        # A string, not a Path: a Path keeps its parts besides (about 0.3 KB per log at rest).
        self._path = os.fspath(path)
        self.max_bytes = self.backups = 0
        self.resize(max_bytes=max_bytes, backups=backups)
        self._buffer_bytes = buffer_bytes
        self._reopen_check_seconds = reopen_check_seconds
        self._buf = bytearray()
        self._closed = False
        self._file: BinaryIO | None = None  # None and not closed: opened at the next write
        self._size = 0
        self._reopen()
        self._checked_at = time.monotonic()
        self._reopen_failed = False
        self.written = 0
        """Bytes that reached the files (what a failing disk took is not counted)."""

    @property
    def path(self) -> Path:
        """The log file."""
        return Path(self._path)

    def resize(self, *, max_bytes: int, backups: int) -> None:
        """Change the rotation size and the backups kept; the next write obeys them.

        A file already over a smaller ``max_bytes`` is rotated at the next write.

        Raises:
            ValueError: for a negative size or count.
        """
        if max_bytes < 0 or backups < 0:
            raise ValueError(
                f"log {self._path!r}: max_bytes and backups must be >= 0,"
                f" got {max_bytes!r}, {backups!r}"
            )
        self.max_bytes, self.backups = max_bytes, backups

    def _open(self) -> BinaryIO:
        path = self.path
        # Private like the state dir, also when re-created after an `rm -rf logs`.
        path.parent.mkdir(mode=LOG_DIR_MODE, parents=True, exist_ok=True)
        # Never through a link, neither the file nor its directory: one planted
        # there would make dsup write worker output wherever it points.
        nofollow = os.O_NOFOLLOW | os.O_CLOEXEC
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | nofollow)
        try:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | nofollow
            fd = os.open(path.name, flags, LOG_FILE_MODE, dir_fd=directory)
        finally:
            os.close(directory)
        return os.fdopen(fd, "ab", buffering=0)

    def _reopen(self) -> BinaryIO:
        """Open the path (again) and take its size; on failure the log stays unopened."""
        file = self._open()
        if self._file is not None:
            self._file.close()
        self._file = file
        self._size = os.fstat(file.fileno()).st_size
        return file

    @property
    def size(self) -> int:
        """Bytes in the current file, counting what is still buffered."""
        return self._size + len(self._buf)

    @property
    def buffered(self) -> int:
        """Bytes taken by :meth:`write` that did not reach the file yet."""
        return len(self._buf)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

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
            room = max(0, self.max_bytes - self.size)  # 0: over a size lowered by resize
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
                raise BlockingIOError(f"log {self._path!r}: write would block")
            self._size += written
            self.written += written
            view = view[written:]

    def _checked_file(self) -> BinaryIO:
        """The open file; opened again first if a rotation or reopen could not."""
        if self._closed:
            raise ValueError(f"log {self._path!r} is closed")
        return self._file if self._file is not None else self._reopen()

    def flush(self) -> None:
        """Write what is buffered to the file (one ``write`` call, normally).

        First, at most every ``REOPEN_CHECK_SECONDS``, open the path again if
        the file was deleted or moved away. When the write fails, what was
        buffered is lost (``written`` does not count it) and the next write
        tries again.

        Raises:
            ValueError: when the log is closed.
            OSError: when the file cannot be opened or written.
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
            return  # unopened: the write opens it
        self._checked_at = now
        opened = os.fstat(self._file.fileno())
        try:
            named: os.stat_result | None = os.stat(self._path)
        except OSError:  # deleted, or its directory gone or replaced
            named = None
        if named is not None and (named.st_ino, named.st_dev) == (opened.st_ino, opened.st_dev):
            self._size = opened.st_size
            return
        try:
            self._reopen()
        except OSError as exc:
            if not self._reopen_failed:
                logger.warning("log %s was moved away and cannot be reopened: %s", self._path, exc)
            self._reopen_failed = True
            return
        self._reopen_failed = False
        logger.info("log %s was deleted or moved away: reopened", self._path)

    def rotate(self) -> None:
        """Flush, then shift the file to ``.1`` (and older backups one up).

        A file or backup deleted by someone else is skipped. Whatever fails,
        the path is opened again (or, if it cannot be, at the next write), so
        a failed rotation never leaves the log unusable.

        Raises:
            ValueError: when the log is closed.
            OSError: when the buffer cannot be written or a file cannot be moved.
        """
        self.flush()
        file, self._file = self._checked_file(), None
        file.close()
        path = self.path
        try:
            if self.backups:
                for n in range(self.backups - 1, 0, -1):
                    _replace_if_there(backup_path(path, n), backup_path(path, n + 1))
                _replace_if_there(path, backup_path(path, 1))
            else:
                path.unlink(missing_ok=True)
        finally:
            self._reopen()
        logger.debug("rotated log %s", self._path)

    def close(self) -> None:
        """Flush and close the file; idempotent."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> RotatingLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _replace_if_there(source: Path, target: Path) -> None:
    """``os.replace``, skipping a source that someone deleted (or its whole directory)."""
    with contextlib.suppress(FileNotFoundError):
        os.replace(source, target)
