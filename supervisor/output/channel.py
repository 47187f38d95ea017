"""A run's channel to its worker (``DSUP_FD``): a socketpair, read in bulk, decoded defensively.

Read like a pipe; a line that is too long, not UTF-8 or not a JSON object with a ``type`` is
counted, never raised. What messages mean is ``process.worker_link``'s.
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from worker_sdk import protocol

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = logging.getLogger(__name__)

READ_BYTES = 64 * 1024
"""One ``recv``'s size."""
READ_BUDGET = 1024 * 1024
"""Bytes read per wake-up at most, so a flooding worker cannot starve the loop."""
MAX_OUTGOING_BYTES = 64 * 1024
"""Bytes of answers kept for a worker that does not read them; beyond, they are dropped."""

JsonObject = dict[str, object]


def make_channel() -> tuple[socket.socket, int]:
    """A connected unix stream socketpair: dsup's end (non-blocking) and the worker's fd.

    Both are close-on-exec; ``Popen(pass_fds=...)`` makes the worker's
    inheritable in the child alone. The caller closes the worker's fd once spawned.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setblocking(False)
    return ours, theirs.detach()


def at_eof(sock: socket.socket) -> bool:
    """Whether the worker's end is closed with nothing left to read (never blocks).

    A reset connection counts as closed; a socket with nothing to read yet does not.
    """
    try:
        return not sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    except OSError:
        return True


@dataclass(slots=True)
class ChannelStats:
    """What a channel refused, by kind (each is logged on its first time)."""

    oversized: int = 0
    not_utf8: int = 0
    not_json: int = 0
    not_a_message: int = 0

    def total(self) -> int:
        """Every refused line."""
        return sum(getattr(self, f.name) for f in fields(self))


class MessageFramer:
    """Splits bytes into lines and lines into JSON objects; bad lines are counted.

    Args:
        process: ``program:index``, for log records.
        max_bytes: the longest line taken, newline included.
    """

    def __init__(self, process: str, max_bytes: int = protocol.MAX_MESSAGE_BYTES) -> None:
        self.process = process
        self.stats = ChannelStats()
        self._max = max_bytes
        self._partial = bytearray()
        self._skipping = False  # inside an oversized line: drop until its newline

    def feed(self, data: bytes) -> list[JsonObject]:
        """The messages completed by ``data``, in order."""
        messages: list[JsonObject] = []
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            if end < 0:
                self._keep(data, start)
                break
            if self._skipping:
                self._skipping = False
            elif len(self._partial) + end - start + 1 > self._max:
                self._refuse("oversized", f"a line over {self._max} bytes")
                self._partial.clear()
            else:
                line = bytes(self._partial) + data[start:end] if self._partial else data[start:end]
                self._partial.clear()
                message = self._decode(line)
                if message is not None:
                    messages.append(message)
            start = end + 1
        return messages

    def finish(self) -> None:
        """At EOF: a last line without its newline is refused (a worker cut off mid-message)."""
        if self._partial or self._skipping:
            self._refuse("not_json", "a last line without its newline")
        self._partial.clear()
        self._skipping = False

    def _keep(self, data: bytes, start: int) -> None:
        if self._skipping:
            return
        if len(self._partial) + len(data) - start >= self._max:
            self._refuse("oversized", f"a line over {self._max} bytes")
            self._partial.clear()
            self._skipping = True
        else:
            self._partial += data[start:]

    def _decode(self, line: bytes) -> JsonObject | None:
        if not line.strip():
            return None  # blank lines are allowed between messages
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._refuse("not_utf8", "a line that is not UTF-8")
            return None
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            self._refuse("not_json", f"not JSON: {text[:80]!r}")
            return None
        if not isinstance(value, dict) or not isinstance(value.get(protocol.TYPE), str):
            self._refuse("not_a_message", f'not an object with a "type": {text[:80]!r}')
            return None
        return value

    def _refuse(self, kind: str, what: str) -> None:
        count = getattr(self.stats, kind) + 1
        setattr(self.stats, kind, count)
        if count == 1:
            logger.warning(
                "process %s: worker channel: ignored %s (further ones are only counted)",
                self.process,
                what,
            )


def read_some(sock: socket.socket, framer: MessageFramer) -> tuple[list[JsonObject], bool]:
    """Read what the socket holds (up to :data:`READ_BUDGET`); the messages and whether EOF.

    Never blocks: the socket is non-blocking. A reset connection counts as EOF.
    """
    messages: list[JsonObject] = []
    budget = READ_BUDGET
    while budget > 0:
        try:
            data = sock.recv(READ_BYTES)
        except BlockingIOError:
            return messages, False
        except OSError as exc:
            logger.debug("process %s: worker channel: %s", framer.process, exc)
            framer.finish()
            return messages, True
        if not data:
            framer.finish()
            return messages, True
        messages.extend(framer.feed(data))
        budget -= len(data)
    return messages, False


class Sender:
    """Non-blocking sends of whole lines to a worker; a line that cannot go is dropped.

    A worker that never reads its answers fills the socket: the rest of a line
    sent in part is kept and sent first next time, so lines are never
    interleaved; whole lines beyond :data:`MAX_OUTGOING_BYTES` are dropped.
    """

    def __init__(self, sock: socket.socket, process: str) -> None:
        self._sock = sock
        self._process = process
        self._rest = b""
        self.dropped = 0

    def send(self, message: Mapping[str, object]) -> bool:
        """Send one message; False when it was dropped (logged)."""
        line = encode(message)
        if not self._flush() or len(self._rest) + len(line) > MAX_OUTGOING_BYTES:
            if len(self._rest) + len(line) > MAX_OUTGOING_BYTES:
                return self._drop("it does not read them")
            self._rest += line
            return True
        try:
            sent = self._sock.send(line)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            return self._drop(f"its end is closed ({exc.strerror or exc})")
        self._rest = line[sent:]
        return True

    def _flush(self) -> bool:
        """Send what is left of a line sent in part; True when nothing is left."""
        if not self._rest:
            return True
        try:
            sent = self._sock.send(self._rest)
        except (BlockingIOError, OSError):
            return False
        self._rest = self._rest[sent:]
        return not self._rest

    def _drop(self, why: str) -> bool:
        self.dropped += 1
        logger.warning("process %s: worker channel: a message was not sent: %s", self._process, why)
        return False


def encode(message: Mapping[str, object]) -> bytes:
    """One message line: compact JSON (non-ASCII escaped) and its newline."""
    return json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"
