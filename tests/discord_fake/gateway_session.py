"""A gateway session's numbered events and the connection that writes them.

A :class:`GatewaySession` numbers every dispatch and keeps it until it is both written
and old enough to fall out of the replay window. A :class:`GatewayConnection` writes
the session's events in order straight from that store, plus a small queue of control
frames (HELLO, ACK, RECONNECT, INVALID_SESSION). There is no bounded side queue that
could overflow: a slow or flooded client receives everything, late but in order, and a
RESUME after an outage replays everything it missed, then RESUMED. Only a client that
falls ``backlog_limit`` events behind loses its session, and the fake then closes the
connection with 4000 so discord.py notices at once (its RESUME is then refused with
INVALID_SESSION and it identifies again), rather than stalling silently.

This module owns the ordering and the bounds; ``gateway.py`` owns the protocol.
"""

from __future__ import annotations

import json
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from aiohttp import web

REPLAY_LIMIT = 1000
"""Events kept for RESUME behind the last one written to the client."""

BACKLOG_LIMIT = 100_000
"""Events a session may hold in all; past it the oldest go and the session is lost."""

CONTROL_LIMIT = 100
"""Unsent control frames per connection; past it the fake closes with 4008, as Discord
closes a client that sends too fast (each HEARTBEAT asks for an ACK)."""

CLOSE_UNKNOWN_ERROR = 4000
CLOSE_RATE_LIMITED = 4008


@dataclass(slots=True, kw_only=True)
class GatewaySession:
    """A gateway session: survives a dropped connection until it is resumed or refused.

    Attributes:
        id: The session id sent in READY.
        intents: The intents of the IDENTIFY.
        seq: The number of the newest event.
        oldest: The number of the oldest event still kept.
        delivered: The newest event written to any connection of this session.
        connection: The live connection, if any.
    """

    id: str
    intents: int
    replay_limit: int = REPLAY_LIMIT
    backlog_limit: int = BACKLOG_LIMIT
    seq: int = 0
    oldest: int = 1
    delivered: int = 0
    connection: GatewayConnection | None = None
    _events: dict[int, dict[str, Any]] = field(default_factory=dict)

    def append(self, event: str, data: dict[str, Any]) -> None:
        """Number an event, keep it, and wake the live connection to write it."""
        self.seq += 1
        self._events[self.seq] = {"op": 0, "t": event, "s": self.seq, "d": data}
        floor = max(self.delivered - self.replay_limit, self.seq - self.backlog_limit)
        while self.oldest <= floor:
            del self._events[self.oldest]
            self.oldest += 1
        if self.connection is not None:
            self.connection.wake()

    def event(self, seq: int) -> dict[str, Any] | None:
        """Return event number ``seq``, or ``None`` if it is gone (or not yet made)."""
        return self._events.get(seq)

    def can_resume_from(self, seq: int) -> bool:
        """Whether every event after ``seq`` is still kept, so a RESUME can replay them."""
        return self.oldest - 1 <= seq <= self.seq


@dataclass(slots=True, eq=False)
class GatewayConnection:
    """One websocket: writes control frames and its session's events, in order.

    Attributes:
        ws: The server side of the websocket.
        session: The session once IDENTIFY or RESUME succeeded.
        next_seq: The number of the next session event to write.
        close_code: The code the fake closes with when the connection ends.
        scope: Cancelled to end the connection.
        closed: Set once the websocket is closed.
    """

    ws: web.WebSocketResponse
    compressor: Any = None
    session: GatewaySession | None = None
    next_seq: int = 1
    close_code: int = 1000
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    closed: anyio.Event = field(default_factory=anyio.Event)
    _control: deque[dict[str, Any]] = field(default_factory=deque)
    _wake: anyio.Event = field(default_factory=anyio.Event)
    _is_finishing: bool = False

    @classmethod
    def open(cls, ws: web.WebSocketResponse, *, compress: bool) -> GatewayConnection:
        """Wrap a prepared websocket; ``compress`` selects zlib-stream frames."""
        return cls(ws=ws, compressor=zlib.compressobj() if compress else None)

    def wake(self) -> None:
        """Make the writer look for work."""
        self._wake.set()

    def finish(self) -> None:
        """Let the writer send the queued control frames, then stop."""
        self._is_finishing = True
        self.wake()

    def close(self, code: int) -> None:
        """End the connection with ``code`` (the handler closes the websocket)."""
        self.close_code = code
        self.scope.cancel()

    def send_control(self, payload: dict[str, Any]) -> None:
        """Queue a non-dispatch frame; too many unsent ones close the connection (4008)."""
        if len(self._control) >= CONTROL_LIMIT:
            self.close(CLOSE_RATE_LIMITED)
            return
        self._control.append(payload)
        self.wake()

    def attach(self, session: GatewaySession, *, after_seq: int) -> None:
        """Write ``session``'s events after ``after_seq`` on this connection from now on."""
        self.session = session
        self.next_seq = after_seq + 1
        session.connection = self
        self.wake()

    def _next_frame(self) -> dict[str, Any] | None:
        """Return the next frame to write, or ``None`` when there is nothing to do.

        Raises:
            LookupError: The next event of the session is gone: the client fell more
                than ``backlog_limit`` events behind.
        """
        if self._control:
            return self._control.popleft()
        session = self.session
        if self._is_finishing or session is None or session.connection is not self:
            return None
        if self.next_seq > session.seq:
            return None
        payload = session.event(self.next_seq)
        if payload is None:
            raise LookupError(f"event {self.next_seq} of session {session.id} is gone")
        session.delivered = max(session.delivered, self.next_seq)
        self.next_seq += 1
        return payload

    async def write(self) -> None:
        """Write frames until cancelled or the client goes away.

        A client too far behind is closed with 4000 (it resumes, which is refused).
        """
        while True:
            try:
                payload = self._next_frame()
            except LookupError:
                self.close(CLOSE_UNKNOWN_ERROR)
                return
            if payload is None:
                if self._is_finishing:
                    return
                await self._wake.wait()
                self._wake = anyio.Event()
                continue
            try:
                await self._send(json.dumps(payload))
            except ConnectionResetError:
                return  # the client went away; the session keeps its events for RESUME

    async def _send(self, text: str) -> None:
        if self.compressor is None:
            await self.ws.send_str(text)
        else:
            data = self.compressor.compress(text.encode())
            await self.ws.send_bytes(data + self.compressor.flush(zlib.Z_SYNC_FLUSH))
