"""The gateway websocket: HELLO, IDENTIFY/READY, RESUME with replay, dispatches.

One :class:`GatewaySession` outlives its connections: every dispatch is numbered and
kept in the session's replay buffer, so a client that RESUMEs after a drop receives what
it missed, then RESUMED. Events are filtered by the identify intents, and message content
is blanked without the MESSAGE_CONTENT intent, as Discord does. Frames are zlib-stream
compressed when the client asks (discord.py does), plain text otherwise.

This module owns the websocket protocol only; the data comes from ``store.py``.
"""

from __future__ import annotations

import json
import logging
import secrets
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from tests.discord_fake.store import FakeStore

logger = logging.getLogger(__name__)

GUILDS = 1 << 0
GUILD_MESSAGES = 1 << 9
GUILD_MESSAGE_REACTIONS = 1 << 10
MESSAGE_CONTENT = 1 << 15
_EVENT_INTENTS = {
    "GUILD_CREATE": GUILDS,
    "MESSAGE_CREATE": GUILD_MESSAGES,
    "MESSAGE_UPDATE": GUILD_MESSAGES,
    "MESSAGE_DELETE": GUILD_MESSAGES,
    "MESSAGE_REACTION_ADD": GUILD_MESSAGE_REACTIONS,
    "MESSAGE_REACTION_REMOVE": GUILD_MESSAGE_REACTIONS,
}
_CONTENT_KEYS = ("content", "embeds", "attachments", "components")
_REPLAY_LIMIT = 1000
_OUTGOING_LIMIT = 1000
CLOSE_AUTHENTICATION_FAILED = 4004


@dataclass(slots=True, kw_only=True)
class GatewaySession:
    """A gateway session: survives a dropped connection until it is resumed or refused."""

    id: str
    intents: int
    seq: int = 0
    buffer: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_REPLAY_LIMIT))
    outgoing: MemoryObjectSendStream[dict[str, Any]] | None = None

    def push(self, payload: dict[str, Any]) -> None:
        """Send to the live connection, if any; a full queue closes it, as Discord does."""
        if self.outgoing is None:
            return
        try:
            self.outgoing.send_nowait(payload)
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.outgoing.close()
            self.outgoing = None


@dataclass(slots=True)
class _Connection:
    ws: web.WebSocketResponse
    compressor: Any
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    close_code: int = 1000
    closed: anyio.Event = field(default_factory=anyio.Event)


class Gateway:
    """The gateway endpoint and its sessions.

    Args:
        store: The world to describe in READY and GUILD_CREATE.
        url: Returns the websocket URL clients should resume on.
        heartbeat_interval_ms: Sent in HELLO.

    Attributes:
        identify_count: IDENTIFY payloads accepted.
        resume_count: RESUMEs accepted.
        refused_resume_count: RESUMEs answered with INVALID_SESSION.
        refuse_resume: When true, every RESUME is answered with INVALID_SESSION.
    """

    def __init__(
        self, store: FakeStore, *, url: Callable[[], str], heartbeat_interval_ms: int = 41_250
    ) -> None:
        self.store = store
        self._url = url
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.sessions: dict[str, GatewaySession] = {}
        self.identify_count = 0
        self.resume_count = 0
        self.refused_resume_count = 0
        self.refuse_resume = False
        self._open = anyio.Event()
        self._open.set()
        self._connections: dict[str, _Connection] = {}

    # --- test controls ----------------------------------------------------------------

    def hold(self) -> None:
        """Make new connections wait before HELLO until :meth:`release`."""
        if self._open.is_set():
            self._open = anyio.Event()

    def release(self) -> None:
        """Let held and new connections proceed."""
        self._open.set()

    async def drop(self, *, code: int = 1001) -> int:
        """Close every live connection with ``code``; sessions stay resumable.

        Returns:
            How many connections were closed.
        """
        dropped = list(self._connections.items())
        for session_id, conn in dropped:
            session = self.sessions.get(session_id)
            if session is not None and session.outgoing is not None:
                session.outgoing.close()
                session.outgoing = None
            conn.close_code = code
            conn.scope.cancel()
        with anyio.fail_after(5):
            for _, conn in dropped:
                await conn.closed.wait()
        return len(dropped)

    def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Number and send one event to every session whose intents ask for it."""
        needed = _EVENT_INTENTS.get(event, 0)
        for session in self.sessions.values():
            if needed and not session.intents & needed:
                continue
            self._send_event(session, event, _filter_content(event, data, session, self.store))

    def _send_event(self, session: GatewaySession, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        payload = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.buffer.append(payload)
        session.push(payload)

    # --- protocol ---------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """Serve one gateway connection until either side closes it."""
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        compress = request.query.get("compress") == "zlib-stream"
        conn = _Connection(ws=ws, compressor=zlib.compressobj() if compress else None)
        session: GatewaySession | None = None
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](_OUTGOING_LIMIT)
        try:
            with conn.scope:
                await self._open.wait()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._write, conn, receive)
                    send.send_nowait(
                        {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}
                    )
                    session = await self._handshake(conn, send)
                    if session is not None:
                        self._connections[session.id] = conn
                        await self._read(conn, session, send)
                    send.close()
        finally:
            send.close()
            if session is not None and self._connections.get(session.id) is conn:
                del self._connections[session.id]
                if session.outgoing is send:
                    session.outgoing = None
            with anyio.move_on_after(2, shield=True):
                await ws.close(code=conn.close_code)
            conn.closed.set()
        return ws

    async def _write(
        self, conn: _Connection, receive: MemoryObjectReceiveStream[dict[str, Any]]
    ) -> None:
        async with receive:
            async for payload in receive:
                text = json.dumps(payload)
                try:
                    if conn.compressor is None:
                        await conn.ws.send_str(text)
                    else:
                        data = conn.compressor.compress(text.encode())
                        await conn.ws.send_bytes(data + conn.compressor.flush(zlib.Z_SYNC_FLUSH))
                except ConnectionResetError:
                    return  # the client went away; the session keeps the event for replay

    async def _receive(self, conn: _Connection) -> dict[str, Any] | None:
        msg = await conn.ws.receive()
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return None
        payload: dict[str, Any] = json.loads(msg.data)
        return payload

    async def _handshake(
        self, conn: _Connection, send: MemoryObjectSendStream[dict[str, Any]]
    ) -> GatewaySession | None:
        """Wait for IDENTIFY or RESUME; answer HEARTBEATs meanwhile."""
        for _ in range(100):  # a well-behaved client needs two frames at most
            payload = await self._receive(conn)
            if payload is None:
                return None
            op, data = payload.get("op"), payload.get("d") or {}
            if op == 1:
                send.send_nowait({"op": 11})
            elif op == 2:
                return self._identify(conn, data, send)
            elif op == 6:
                return self._resume(conn, data, send)
        conn.close_code = 4002
        return None

    def _identify(
        self, conn: _Connection, data: dict[str, Any], send: MemoryObjectSendStream[dict[str, Any]]
    ) -> GatewaySession | None:
        if data.get("token") != self.store.token:
            conn.close_code = CLOSE_AUTHENTICATION_FAILED
            return None
        self.identify_count += 1
        session = GatewaySession(id=secrets.token_hex(16), intents=int(data.get("intents", 0)))
        self.sessions[session.id] = session
        session.outgoing = send
        store = self.store
        ready: dict[str, Any] = {
            "v": 10,
            "user": store.bot.payload() | {"verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(store.guild_id), "unavailable": True}],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self._url(),
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "application": {"id": str(store.application_id), "flags": 0},
        }
        if "shard" in data:
            ready["shard"] = data["shard"]
        self.store.notify()
        self._send_event(session, "READY", ready)
        if session.intents & GUILDS:
            self._send_event(session, "GUILD_CREATE", store.guild_payload())
        return session

    def _resume(
        self, conn: _Connection, data: dict[str, Any], send: MemoryObjectSendStream[dict[str, Any]]
    ) -> GatewaySession | None:
        session = self.sessions.get(str(data.get("session_id")))
        seq = data.get("seq") or 0
        oldest = session.buffer[0]["s"] if session is not None and session.buffer else 1
        if (
            self.refuse_resume
            or session is None
            or data.get("token") != self.store.token
            or seq < oldest - 1
        ):
            self.refused_resume_count += 1
            if session is not None:
                del self.sessions[session.id]
            send.send_nowait({"op": 9, "d": False})
            self.store.notify()
            return None
        self.resume_count += 1
        old = self._connections.pop(session.id, None)
        if old is not None:
            old.close_code = 4000
            old.scope.cancel()
        for payload in session.buffer:
            if payload["s"] > seq:
                send.send_nowait(payload)
        session.outgoing = send
        self._send_event(session, "RESUMED", {})
        self.store.notify()
        return session

    async def _read(
        self,
        conn: _Connection,
        session: GatewaySession,
        send: MemoryObjectSendStream[dict[str, Any]],
    ) -> None:
        while True:
            payload = await self._receive(conn)
            if payload is None:
                return
            op = payload.get("op")
            if op == 1:
                send.send_nowait({"op": 11})
            elif op == 8:
                self._send_event(
                    session, "GUILD_MEMBERS_CHUNK", self._chunk(payload.get("d") or {})
                )
            elif op == 6:
                conn.close_code = 4005  # already authenticated
                return

    def _chunk(self, request: dict[str, Any]) -> dict[str, Any]:
        members = [u.member_payload() for u in self.store.users.values()]
        chunk: dict[str, Any] = {
            "guild_id": str(self.store.guild_id),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if request.get("nonce") is not None:
            chunk["nonce"] = request["nonce"]
        return chunk


def _filter_content(
    event: str, data: dict[str, Any], session: GatewaySession, store: FakeStore
) -> dict[str, Any]:
    """Blank message content for a session without MESSAGE_CONTENT, as Discord does."""
    if event not in ("MESSAGE_CREATE", "MESSAGE_UPDATE") or session.intents & MESSAGE_CONTENT:
        return data
    author = data.get("author") or {}
    mentioned = any(m.get("id") == str(store.bot.id) for m in data.get("mentions", []))
    if author.get("id") == str(store.bot.id) or mentioned:
        return data
    filtered = dict(data)
    for key in _CONTENT_KEYS:
        if key in filtered:
            filtered[key] = "" if key == "content" else []
    return filtered
