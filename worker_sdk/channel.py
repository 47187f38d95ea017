"""The worker's end of its channel to dsup: JSON lines over the socket ``DSUP_FD`` names.

Sends never block the caller (a writer thread; progress coalesced); a reader thread hands each
answer to the request waiting for its ``id``.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import socket
import stat
import sys
import threading
import time
from typing import TYPE_CHECKING

from worker_sdk import protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

JsonObject = dict[str, object]

PROGRESS_INTERVAL = 0.2
"""Seconds between two progress messages sent; the calls between are coalesced."""
MAX_QUEUED = 10_000
"""Messages queued for a dsup that reads slowly; beyond, logs are dropped and counted."""
EXIT_FLUSH_SECONDS = 5.0
"""At interpreter exit, the longest the SDK waits for queued messages to be sent."""


class Channel:
    """One open channel to dsup; thread-safe. Use :func:`connect`.

    Args:
        sock: a connected unix stream socket (dsup's ``DSUP_FD``).
    """

    def __init__(self, sock: socket.socket) -> None:
        self.pid = os.getpid()
        self._sock = sock
        self._cond = threading.Condition()
        self._queue: collections.deque[bytes] = collections.deque()
        self._progress: bytes | None = None
        self._next_progress = 0.0
        self._unsent = 0  # queued or being sent
        self._dropped = 0
        self._is_broken = False
        self._writer: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        self._waiters: dict[str, list[JsonObject]] = {}
        self._handlers: dict[str, Callable[[JsonObject], None]] = {}
        self._next_id = 0

    @property
    def is_broken(self) -> bool:
        """True once dsup's end is gone (a send or a read failed, or EOF)."""
        return self._is_broken

    def send(self, message: Mapping[str, object], *, droppable: bool = False) -> bool:
        """Queue ``message`` for sending; returns at once.

        Args:
            message: a JSON object with ``type``.
            droppable: may be dropped (and counted) when :data:`MAX_QUEUED`
                messages wait already (logs); others are always queued.

        Returns:
            False when the channel is broken (the caller degrades), else True.

        Raises:
            ValueError: the message is longer than ``MAX_MESSAGE_BYTES``.
        """
        line = encode(message)
        with self._cond:
            if self._is_broken:
                return False
            if droppable and len(self._queue) >= MAX_QUEUED:
                self._dropped += 1
                return True
            if self._dropped and len(self._queue) < MAX_QUEUED:
                note = {protocol.TYPE: protocol.LOG, "level": "warning"}
                note["text"] = f"[{self._dropped} log messages dropped: dsup read too slowly]"
                self._queue.append(encode(note))
                self._unsent += 1
                self._dropped = 0
            self._queue.append(line)
            self._unsent += 1
            self._wake()
        return True

    def send_progress(self, message: Mapping[str, object]) -> bool:
        """Set the progress to send next (coalesced: only the latest is sent)."""
        line = encode(message)
        with self._cond:
            if self._is_broken:
                return False
            if self._progress is None:
                self._unsent += 1
            self._progress = line
            self._wake()
        return True

    def new_id(self, prefix: str) -> str:
        """An id unique in this process, for a request (``q1``, ``q2``...)."""
        with self._cond:
            self._next_id += 1
            return f"{prefix}{self._next_id}"

    def request(self, message: Mapping[str, object], *, timeout: float | None) -> JsonObject | None:
        """Send ``message`` (which has an ``id``) and wait for dsup's reply with that id.

        Returns:
            The reply, or None when ``timeout`` seconds passed or the channel broke first.
        """
        key = _key(message.get("id"))
        box: list[JsonObject] = []
        with self._cond:
            self._waiters[key] = box
        self._start_reader()
        try:
            if not self.send(message):
                return None
            deadline = None if timeout is None else time.monotonic() + timeout
            with self._cond:
                while not box and not self._is_broken:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self._cond.wait(left)
                return box[0] if box else None
        finally:
            with self._cond:
                self._waiters.pop(key, None)

    def on(self, type_: str, handler: Callable[[JsonObject], None]) -> None:
        """Call ``handler`` (in the reader thread) for each ``type_`` message no request awaits."""
        with self._cond:
            self._handlers[type_] = handler
        self._start_reader()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until everything queued is sent; True if it was."""
        with self._cond:
            if self._progress is not None:
                self._next_progress = 0.0  # the last progress goes now, not after the interval
                self._wake()
            return (
                self._cond.wait_for(lambda: not self._unsent or self._is_broken, timeout=timeout)
                and not self._is_broken
            )

    # -- threads ---------------------------------------------------------------

    def _wake(self) -> None:
        """Start the writer on first use, or wake it (under ``_cond``)."""
        if self._writer is None:
            self._writer = threading.Thread(target=self._write, name="dsup-sdk-writer", daemon=True)
            self._writer.start()
            atexit.register(self.flush, EXIT_FLUSH_SECONDS)
        self._cond.notify_all()

    def _next_line(self) -> bytes | None:
        """The next line to send, waiting for one (under ``_cond``); None when broken."""
        while not self._is_broken:
            if self._queue:
                return self._queue.popleft()
            now = time.monotonic()
            if self._progress is not None:
                if now >= self._next_progress:
                    line, self._progress = self._progress, None
                    self._next_progress = now + PROGRESS_INTERVAL
                    return line
                self._cond.wait(self._next_progress - now)
            else:
                self._cond.wait()
        return None

    def _write(self) -> None:
        while True:
            with self._cond:
                line = self._next_line()
            if line is None:
                return
            try:
                self._sock.sendall(line)
            except OSError as exc:
                self._break(f"cannot send to dsup ({exc})")
                return
            with self._cond:
                self._unsent -= 1
                self._cond.notify_all()

    def _start_reader(self) -> None:
        with self._cond:
            if self._reader is not None:
                return
            self._reader = threading.Thread(target=self._read, name="dsup-sdk-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        pending = b""
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError as exc:
                self._break(f"cannot read from dsup ({exc})")
                return
            if not data:
                self._break("dsup closed the channel")
                return
            *lines, pending = (pending + data).split(b"\n")
            if len(pending) > protocol.MAX_MESSAGE_BYTES:
                pending = b""
            for line in lines:
                self._dispatch(line)

    def _dispatch(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        with self._cond:
            box = self._waiters.get(_key(message.get("id")))
            if box is not None and not box:
                box.append(message)
                self._cond.notify_all()
                return
            handler = self._handlers.get(str(message.get(protocol.TYPE)))
        if handler is not None:
            handler(message)

    def _break(self, why: str) -> None:
        with self._cond:
            if self._is_broken:
                return
            self._is_broken = True
            self._unsent = 0
            self._queue.clear()
            self._cond.notify_all()
        say(f"[dsup] {why}; messages go to stderr from now on")


def say(line: str) -> None:
    """Write one line to stderr (the worker's own), never raising."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # closed or missing stderr
        pass


def _key(value: object) -> str:
    return json.dumps(value)


def encode(message: Mapping[str, object]) -> bytes:
    """One message line: compact JSON and its newline.

    Raises:
        ValueError: it is longer than ``MAX_MESSAGE_BYTES`` (or not JSON-able).
        TypeError: a value is not JSON-able.
    """
    line = json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    data = line.encode("utf-8", "surrogatepass") + b"\n"
    if len(data) > protocol.MAX_MESSAGE_BYTES:
        raise ValueError(
            f"a {message.get(protocol.TYPE)} message of {len(data)} bytes is longer than dsup "
            f"takes ({protocol.MAX_MESSAGE_BYTES}); put big data in a file and pass files=[...]"
        )
    return data


_lock = threading.Lock()
_channel: Channel | None = None
_checked_pid: int | None = None


def connect() -> Channel | None:
    """The channel to dsup named by ``DSUP_FD``, or None outside dsup.

    None too when ``DSUP_FD`` does not name a unix stream socket: a process
    that inherited the variable but not the descriptor (started with
    ``close_fds``) must not write JSON into whatever file got that number.
    A forked child gets a channel of its own on the same socket.
    """
    global _channel, _checked_pid
    pid = os.getpid()
    with _lock:
        if _checked_pid != pid:
            _checked_pid = pid
            sock = _open(os.environ.get(protocol.FD, ""))
            _channel = Channel(sock) if sock is not None else None
        return _channel


def _open(value: str) -> socket.socket | None:
    """The socket on fd ``value``, or None (not a number, not open, not a unix stream socket)."""
    try:
        fd = int(value)
        if fd < 0 or not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return None
        sock = socket.socket(fileno=os.dup(fd))
    except (ValueError, OSError):
        return None
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.close()
        return None
    sock.setblocking(True)
    return sock
