"""The client side of the control socket, for ``dsup ctl``: one blocking socket.

A request line out, bounded answer lines back, error answers raised as exceptions; no event
loop, so ``dsup ctl`` starts fast.
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
from typing import TYPE_CHECKING

from supervisor.control import socketfile

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

JsonObject = dict[str, object]

_MAX_RESPONSE_BYTES = 256 * 1024 * 1024


class NotRunning(Exception):
    """No dsup answers on the socket."""


class Failed(Exception):
    """The server answered with an error of type ``kind``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@contextlib.contextmanager
def connect(path: Path, timeout: float) -> Iterator[tuple[socket.socket, LineReader]]:
    """A connection to the control socket at ``path``, with a reader of its answers.

    Raises:
        NotRunning: nothing listens at ``path`` (missing, refused, not a socket).
        NotOurServer: the server there runs as another user than the owner
            of its directory (or root): nothing is sent to it.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            with socketfile.address(path) as where:
                sock.connect(where)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NotRunning(f"{path}: {exc.strerror}") from None
        except OSError as exc:
            if exc.errno in (errno.ENOTSOCK, errno.ENOTDIR):
                raise NotRunning(f"{path}: {exc.strerror}") from None
            raise
        socketfile.check_server(sock, path)
        yield sock, LineReader(sock)
    finally:
        sock.close()


class LineReader:
    """Reads JSON lines from a socket (bounded), without per-byte syscalls."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()

    def message(self) -> JsonObject | None:
        """The next message, or None when the server closed the connection."""
        while (end := self._buf.find(b"\n")) < 0:
            if len(self._buf) > _MAX_RESPONSE_BYTES:
                raise Failed("ControlProtocolError", "response too large")
            try:
                data = self._sock.recv(1024 * 1024)
            except ConnectionResetError:  # closed with our request unread: dsup is leaving
                return None
            if not data:
                return None
            self._buf += data
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            raise Failed("ControlProtocolError", f"unexpected response {line[:200]!r}")
        return message


def send(sock: socket.socket, cmd: str, args: Mapping[str, object]) -> None:
    """Send one request line."""
    sock.sendall(json.dumps({"id": 1, "cmd": cmd, "args": args}).encode() + b"\n")


def checked(message: JsonObject | None) -> JsonObject:
    """``message`` if it is a success.

    Raises:
        NotRunning: there was no message: dsup closed the connection.
        Failed: the message is an error.
    """
    if message is None:
        raise NotRunning("dsup closed the connection")
    if message.get("ok") is not True:
        error = message.get("error")
        err = error if isinstance(error, dict) else {}
        raise Failed(str(err.get("type", "Error")), str(err.get("message", message)))
    return message


def call(path: Path, cmd: str, args: Mapping[str, object], *, timeout: float) -> object:
    """One request, one response: the ``result``."""
    with connect(path, timeout) as (sock, reader):
        send(sock, cmd, args)
        return checked(reader.message()).get("result")
