"""The state directory of one node: its lock, instance id and paths, private to its user.

The lock is an ``flock`` that the kernel drops when its holder dies, even by SIGKILL, so a
stale lock never needs cleaning by hand.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import pwd
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.errors import StateDirLocked, StateDirUnsafe, SupervisorError

if TYPE_CHECKING:
    from collections.abc import Iterator

logger = logging.getLogger(__name__)

LOCK_NAME = "lock"
INSTANCE_ID_NAME = "instance_id"
SHUTDOWN_NAME = "shutting-down"
"""A marker with the pid of a dsup that has begun its shutdown (see mark_shutting_down)."""
_INSTANCE_ID_RE = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class StateDir:
    """An opened, locked state directory.

    Attributes:
        path: the directory itself.
        instance_id: 32 random hex digits made once per directory; the value of the
            ``DSUP_INSTANCE`` marker, so two dsups never touch each other's
            processes, even with the same node name.
        log_dir: ``path/logs`` (created, mode 0700).
        ledger_path: ``path/ledger.sqlite3``.
        socket_path: ``path/control.sock``.
    """

    path: Path
    instance_id: str
    log_dir: Path
    ledger_path: Path
    socket_path: Path


SOCKET_NAME = "control.sock"
"""The control socket's file name inside a state directory."""


@contextlib.contextmanager
def open_state_dir(path: Path) -> Iterator[StateDir]:
    """Create (if needed), check and lock a state directory for this process.

    Nothing here touches any process: a caller that gets ``StateDirLocked``
    has not signalled anything yet.

    Args:
        path: the state directory; created with mode 0700 (parents too).

    Yields:
        The opened state directory; the lock is held until the block exits.

    Raises:
        StateDirUnsafe: the directory is writable by group or others, belongs
            to another user, is not a directory, or holds a corrupt instance id.
        StateDirLocked: another live process holds the lock.
    """
    path = Path(path).absolute()
    with _usable(path):
        _make_private_dir(path)
        lock_fd = _acquire_lock(path)
    try:
        # A marker left by an earlier life: with the lock held, it is stale.
        with _usable(path), contextlib.suppress(FileNotFoundError):
            (path / SHUTDOWN_NAME).unlink()
        log_dir = path / "logs"
        with _usable(path):
            _make_private_dir(log_dir)
            state = StateDir(
                path=path,
                instance_id=_instance_id(path),
                log_dir=log_dir,
                ledger_path=path / "ledger.sqlite3",
                socket_path=path / SOCKET_NAME,
            )
        logger.info(
            "state_dir %s locked by pid %d (instance %s)", path, os.getpid(), state.instance_id
        )
        yield state
    finally:
        # Closing the descriptor drops the flock. The pid stays in the file: it is
        # only read while the lock is held, so a stale value is harmless.
        os.close(lock_fd)


@contextlib.contextmanager
def _usable(path: Path) -> Iterator[None]:
    """Turn a file-system failure (no permission, read-only...) into StateDirUnsafe."""
    try:
        yield
    except SupervisorError:
        raise
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise StateDirUnsafe(
            path,
            f"cannot be used: {exc.strerror or exc}{where}",
            "point state_dir at a directory this user can create and write",
        ) from None


def _make_private_dir(path: Path) -> None:
    """Create ``path`` with mode 0700 if missing, then refuse it if it is not private."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise StateDirUnsafe(path, "is not a directory", "point state_dir at a directory")
    if st.st_uid != os.getuid():
        raise StateDirUnsafe(
            path,
            f"belongs to uid {st.st_uid}, not to this user (uid {os.getuid()})",
            "give each user their own state_dir",
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        # A sticky directory (/tmp) is shared on purpose: never advise chmod on it.
        fix = (
            "give dsup a directory of its own inside it, e.g. a 'dsup' subdirectory"
            if st.st_mode & stat.S_ISVTX
            else f"run: chmod 700 {str(path)!r}"
        )
        raise StateDirUnsafe(
            path, f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})", fix
        )


def _acquire_lock(path: Path) -> int:
    """Take the exclusive lock on ``path/lock`` and write our pid into it.

    Returns:
        The open lock file descriptor; closing it releases the lock.
    """
    lock_path = path / LOCK_NAME
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise StateDirLocked(path, _read_pid(fd)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def running_holder(path: Path) -> int | None:
    """The pid of a live dsup that seems to hold the state directory ``path``, if any.

    Read from the lock file without taking the lock (probing it could refuse a
    dsup starting at that moment), then checked against the live process, so it
    is a hint for messages, never a reason to signal anything.
    """
    try:
        fd = os.open(path / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        pid = _read_pid(fd)
    finally:
        os.close(fd)
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            argv = cmdline.read()
    except OSError:
        return None
    return pid if b"supervisor" in argv or b"dsup" in argv else None


def access_hint(path: Path) -> str:
    """Who keeps this user from the control socket ``path``, as a hint ("" if none).

    Looks at the nearest of ``path`` and its parents this user can see: the
    socket itself, or the directory that refused the way on. When it belongs
    to another uid: ``"; state_dir belongs to uid 0 (root); run ctl as that
    user or root"`` (a directory further up is named by its path).
    """
    for place in (path, *path.absolute().parents):
        try:
            uid = place.stat().st_uid
        except OSError:
            continue
        if uid == os.geteuid():
            return ""
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = "no user name"
        what = "state_dir" if place in (path, path.parent) else str(place)
        return f"; {what} belongs to uid {uid} ({name}); run ctl as that user or root"
    return ""


def mark_shutting_down(path: Path) -> None:
    """Say in the state directory ``path`` that this dsup has begun its shutdown.

    Written before the control socket goes away, so ``dsup ctl`` can tell a
    node on its way out from one whose socket was lost. The next dsup to lock
    the directory removes it. A failure is logged, never raised: the
    shutdown goes on.
    """
    try:
        write_private(path / SHUTDOWN_NAME, f"{os.getpid()}\n".encode())
    except OSError as exc:
        logger.warning("state_dir %s: cannot mark the shutdown: %s", path, exc)


def shutdown_marker(path: Path) -> int | None:
    """The pid of the dsup that last began a shutdown on ``path``, if any.

    The marker outlives its dsup until the next one locks the directory, so
    compare it with :func:`running_holder` to tell a shutdown under way.
    """
    try:
        text = read_private(path / SHUTDOWN_NAME).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def wait_released(path: Path, timeout: float, *, poll: float = 0.05) -> bool:
    """Block until no process holds the lock of the state directory ``path``.

    For ``dsup ctl shutdown``: once the lock is free, a new ``dsup run`` can
    take the directory. The lock is probed (shared, at once released) every
    ``poll`` seconds.

    Returns:
        True once the lock is free (or there is no lock file), False when it
        is still held after ``timeout`` seconds.
    """
    try:
        fd = os.open(path / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return True
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(poll)
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
                return True
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes, *, is_durable: bool = False) -> None:
    """Write ``path`` (mode 0600, truncated) without following a symbolic link there.

    A file in state_dir is never opened through a link: one planted by someone
    who could write to the directory would make dsup write wherever it points.
    With ``is_durable`` the data is on disk when this returns (``fsync``); its
    name is once :func:`sync_dir` of its directory returns.

    Raises:
        OSError: it cannot be written (``ELOOP`` for a link).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if is_durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(path: Path) -> None:
    """Put the entries of directory ``path`` on disk (``fsync``): the files created in it.

    Raises:
        OSError: it cannot be synced (``ELOOP`` for a link).
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_private(path: Path, limit: int = 4096) -> bytes:
    """The first ``limit`` bytes of ``path``, not following a symbolic link there.

    Raises:
        OSError: it cannot be read (``ELOOP`` for a link).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    """The pid the lock holder wrote, or None if it has not written one yet."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _instance_id(path: Path) -> str:
    """Read the instance id of ``path``, creating it on first use.

    Called with the lock held, so no other dsup races the creation.
    """
    id_path = path / INSTANCE_ID_NAME
    try:
        text = read_private(id_path).decode("ascii", "replace").strip()
    except FileNotFoundError:
        new_id = os.urandom(16).hex()
        tmp = path / f"{INSTANCE_ID_NAME}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # a link planted there is removed, not followed
        write_private(tmp, f"{new_id}\n".encode())
        tmp.replace(id_path)
        logger.info("state_dir %s: created instance id %s", path, new_id)
        return new_id
    if not _INSTANCE_ID_RE.match(text):
        # Never silently make a new one: the old id is how we recognise the
        # processes a previous life of this node left behind.
        raise StateDirUnsafe(
            path,
            f"holds a corrupt instance id {text[:40]!r} in {INSTANCE_ID_NAME}",
            f"delete {str(id_path)!r} once no process of this node is left",
        )
    return text
