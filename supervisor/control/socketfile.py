"""The control socket's file: a private directory, stale versus live sockets, mode 0600.

A socket left by a killed dsup is replaced and a live one refused; a path too long for
``sun_path`` is reached through its directory's fd.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import struct
from typing import TYPE_CHECKING, Literal

import anyio

from supervisor.errors import StateDirLocked, StateDirUnsafe

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

logger = logging.getLogger(__name__)

SOCKET_MODE = 0o600
MAX_ADDRESS_BYTES = 107  # Linux's sun_path holds 108 bytes, the last a NUL


@contextlib.contextmanager
def address(path: Path) -> Iterator[str]:
    """An address to ``bind`` or ``connect`` for the socket at ``path``, for the block.

    A unix socket address holds at most 107 bytes, and a state_dir deep in a
    home directory easily makes a longer path. Such a path is reached through
    a descriptor of its directory, ``/proc/self/fd/N/control.sock``, which the
    kernel resolves like the path itself.
    """
    text = os.fspath(path)
    if len(os.fsencode(text)) <= MAX_ADDRESS_BYTES:
        yield text
        return
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{directory}/{path.name}"
    finally:
        os.close(directory)


def peer_credentials(sock: socket.socket) -> tuple[int, int] | None:
    """The ``(pid, uid)`` at the other end of a unix socket; None off Linux."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid, uid


def check_server(sock: socket.socket, path: Path) -> None:
    """Refuse a server that runs as neither the owner of the socket's directory nor root.

    Someone who could write to the state_dir (a ``chmod 777`` after dsup
    started) may have put their own server at ``path``; ``dsup ctl`` must not
    send it commands nor believe its answers. Off Linux nothing is checked.

    Raises:
        NotOurServer: the peer's uid is another one.
    """
    creds = peer_credentials(sock)
    if creds is None:
        return
    pid, uid = creds
    owner = os.stat(path.parent).st_uid
    if uid not in (owner, 0):
        raise NotOurServer(path, pid=pid, uid=uid, owner=owner)


class NotOurServer(Exception):
    """The server at a control socket runs as another user than its state_dir's owner."""

    def __init__(self, path: Path, *, pid: int, uid: int, owner: int) -> None:
        self.path, self.pid, self.uid, self.owner = path, pid, uid, owner
        super().__init__(
            f"{path}: refusing to talk to the server there: it runs as uid {uid} (pid {pid}),"
            f" but state_dir belongs to uid {owner}, and only that user or root runs its dsup;"
            f" someone may have replaced the socket: check who can write to {str(path.parent)!r}"
            " (chmod 700) and restart dsup"
        )


def directory_problem(path: Path) -> str | None:
    """Why the socket directory is not ours alone, or None when it is."""
    try:
        check_private_dir(path)
    except StateDirUnsafe as exc:
        return str(exc)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return None


def check_private_dir(path: Path) -> None:
    """Refuse a socket directory that is not ours alone.

    Raises:
        StateDirUnsafe: it belongs to another user or others may write to it.
    """
    st = path.stat()
    if st.st_uid != os.getuid():
        raise StateDirUnsafe(
            path, f"belongs to uid {st.st_uid}, not to this user", "give dsup its own state_dir"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StateDirUnsafe(
            path,
            f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})",
            f"run: chmod 700 {str(path)!r}",
        )


async def clear_stale_socket(path: Path) -> None:
    """Remove a socket left by a dead dsup; refuse one a live dsup answers on.

    Raises:
        StateDirUnsafe: something that is not a socket is at ``path``.
        StateDirLocked: a live dsup answers on ``path``.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise StateDirUnsafe(path.parent, f"holds {path.name}, not a socket", f"remove {path}")
    holder = await anyio.to_thread.run_sync(_probe, path)
    if holder is not None:
        raise StateDirLocked(path.parent, holder or None)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    logger.warning("removed a stale control socket %s (its dsup is gone)", path)


def _probe(path: Path) -> int | None:
    """Connect to ``path``: the pid of the live server (0 if unknown), None if stale."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        try:
            with address(path) as where:
                sock.connect(where)
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                return None
            raise
        creds = peer_credentials(sock)
        return 0 if creds is None else creds[0]


class Listener:
    """A listening unix socket bound at ``path``, and whether the file there is still it.

    Closing it (or leaving its ``with`` block) closes the socket and removes the
    file, unless another server has replaced it.
    """

    def __init__(self, path: Path, sock: socket.socket) -> None:
        self.path = path
        self.sock = sock
        st = os.lstat(path)
        self._ident = (st.st_dev, st.st_ino)

    def state(self) -> Literal["ours", "missing", "replaced"]:
        """``ours`` while ``path`` is this socket's file; ``missing`` once deleted."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return "missing"
        if stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == self._ident:
            return "ours"
        return "replaced"

    def close(self) -> None:
        """Stop listening and remove our file; safe to call twice."""
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            if self.state() == "ours":
                self.path.unlink()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def listen(path: Path) -> Listener:
    """A non-blocking listening unix socket at ``path`` with mode 0600 (its directory is private).

    Raises:
        OSError: ``path`` cannot be bound (something is in the way, no directory).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        with address(path) as where:
            sock.bind(where)
        if not stat.S_ISSOCK(os.lstat(path).st_mode):  # swapped for a link: chmod follows
            raise FileExistsError(errno.EEXIST, "replaced as it was bound", str(path))
        os.chmod(path, SOCKET_MODE)
        sock.listen(128)
        return Listener(path, sock)
    except BaseException:
        sock.close()
        raise
