"""Files an outbox row sends (the file of a command's answer), kept in the state directory.

Written and synced to disk before their row, so an answer waiting for Discord keeps its file
across restarts and power losses; removed when the row is sent or abandoned, and at start-up
when no pending row names them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
from typing import TYPE_CHECKING

from supervisor.state.statedir import sync_dir, write_private

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from pathlib import Path

logger = logging.getLogger(__name__)

DIR_NAME = "outbox-files"
"""The folder in the state directory holding one folder per row that sends files."""
MAX_BYTES = 200 * 1024 * 1024
"""The most bytes all waiting rows' files may hold (a long outage must not fill the disk)."""
MAX_FILES = 10
"""Discord's cap on attachments per message."""
MAX_ROW_BYTES = 25 * 1024 * 1024
"""Discord's cap on the attachments of one request: the most one row's files hold."""
_NAME_CHARS = 100


class OutboxFiles:
    """The files of outbox rows under one folder: a folder per row, named at random.

    Methods are synchronous (call them in a thread) and never follow a symbolic link
    planted in the state directory.

    Args:
        root: ``state_dir/outbox-files`` (created, mode 0700, when a file is kept).
        max_bytes: see :data:`MAX_BYTES`.
    """

    def __init__(self, root: Path, *, max_bytes: int = MAX_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def keep(self, files: Sequence[tuple[str, bytes]]) -> str:
        """Write ``(name, data)`` files into a new folder, on disk when this returns;
        its name, for the row.

        Raises:
            OSError: they cannot all be written (a full disk: ``ENOSPC``; more than
                :attr:`max_bytes` waiting already: ``EDQUOT``). Nothing is left behind.
            ValueError: more than :data:`MAX_FILES` files or :data:`MAX_ROW_BYTES`
                bytes (the caller bounds what it sends).
        """
        size = sum(len(data) for _, data in files)
        if len(files) > MAX_FILES or size > MAX_ROW_BYTES:
            raise ValueError(f"{len(files)} files of {size} bytes do not fit one message")
        used = self.used_bytes()
        if used + size > self.max_bytes:
            raise OSError(
                errno.EDQUOT,
                f"the answers waiting for Discord hold {used // 1024**2} MiB of files already",
            )
        is_new_root = not self.root.exists()
        self.root.mkdir(mode=0o700, exist_ok=True)
        name = secrets.token_hex(8)
        folder = self.root / name
        folder.mkdir(mode=0o700)
        try:
            # The row written next names the folder: its files, their names and its
            # own name are on disk first, or a power loss could leave that row
            # pointing at empty or missing files.
            for index, (filename, data) in enumerate(files):
                write_private(folder / f"{index:02d}-{_safe(filename)}", data, is_durable=True)
            sync_dir(folder)
            sync_dir(self.root)
            if is_new_root:
                sync_dir(self.root.parent)
        except OSError:
            self.remove(name)
            raise
        return name

    def read(self, name: str) -> list[tuple[str, bytes]]:
        """The ``(name, data)`` files of folder ``name``, in the order kept.

        A file that is gone or unreadable is left out (logged).
        """
        folder = self._folder(name)
        try:
            entries = sorted(os.listdir(folder))
        except OSError as exc:
            logger.warning("outbox: the files of %s are gone: %s", name, exc.strerror or exc)
            return []
        found = []
        for entry in entries[:MAX_FILES]:
            try:
                fd = os.open(folder / entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                with open(fd, "rb") as handle:
                    data = handle.read(MAX_ROW_BYTES)
            except OSError as exc:
                logger.warning("outbox: file %s/%s unreadable: %s", name, entry, exc.strerror)
                continue
            found.append((entry[3:], data))
        return found

    def remove(self, name: str) -> None:
        """Remove folder ``name`` and its files (nothing when it is gone already)."""
        if not name:
            return
        path = self._folder(name)
        try:
            if path.is_symlink() or not path.is_dir():
                path.unlink()
            else:
                shutil.rmtree(path)
        except FileNotFoundError:
            pass
        except OSError as exc:  # said, never raised: a sent row is sent
            logger.warning("outbox: cannot remove the files of %s: %s", name, exc)

    def sweep(self, wanted: Iterable[str]) -> int:
        """Remove every folder not in ``wanted`` (left by a crash); how many were removed."""
        keep = set(wanted)
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return 0
        stale = [n for n in names if n not in keep]
        for name in stale:
            self.remove(name)
        return len(stale)

    def used_bytes(self) -> int:
        """Bytes held by every folder's files now."""
        total = 0
        with contextlib.suppress(FileNotFoundError):
            for folder in os.scandir(self.root):
                if not folder.is_dir(follow_symlinks=False):
                    continue
                with contextlib.suppress(OSError):
                    total += sum(f.stat(follow_symlinks=False).st_size for f in os.scandir(folder))
        return total

    def _folder(self, name: str) -> Path:
        return self.root / os.path.basename(name)


def _safe(filename: str) -> str:
    """``filename`` as one path component (the name the attachment shows)."""
    base = os.path.basename(filename.replace("\\", "/")).lstrip(".")
    return base[:_NAME_CHARS] or "file"
