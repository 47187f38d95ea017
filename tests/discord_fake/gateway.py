"""The gateway websocket: HELLO, IDENTIFY/READY, RESUME with replay, dispatches.

One :class:`~tests.discord_fake.gateway_session.GatewaySession` outlives its
connections: every dispatch is numbered and kept, so a client that RESUMEs after a drop
receives what it missed, then RESUMED (see ``gateway_session.py`` for the bounds).
Events are filtered by the identify intents, message content is blanked without the
MESSAGE_CONTENT intent, and events in a channel the bot cannot view are not sent to it,
as Discord does. Frames are zlib-stream compressed when the client asks (discord.py
does), plain text otherwise.

This module owns the websocket protocol only; the data comes from ``store.py``.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import TYPE_CHECKING, Any

import anyio
from aiohttp import WSMsgType, web

from tests.discord_fake.gateway_session import (
    BACKLOG_LIMIT,
    REPLAY_LIMIT,
    GatewayConnection,
    GatewaySession,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.discord_fake.store import FakeStore

logger = logging.getLogger(__name__)

GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_MESSAGES = 1 << 9
GUILD_MESSAGE_REACTIONS = 1 << 10
GUILD_MESSAGE_TYPING = 1 << 11
DIRECT_MESSAGES = 1 << 12
MESSAGE_CONTENT = 1 << 15
_EVENT_INTENTS = {
    "GUILD_CREATE": GUILDS,
    "GUILD_ROLE_CREATE": GUILDS,
    "CHANNEL_CREATE": GUILDS,
    "CHANNEL_DELETE": GUILDS,
    "GUILD_MEMBER_ADD": GUILD_MEMBERS,
    "GUILD_MEMBER_UPDATE": GUILD_MEMBERS,
    "MESSAGE_CREATE": GUILD_MESSAGES,
    "MESSAGE_UPDATE": GUILD_MESSAGES,
    "MESSAGE_DELETE": GUILD_MESSAGES,
    "MESSAGE_REACTION_ADD": GUILD_MESSAGE_REACTIONS,
    "MESSAGE_REACTION_REMOVE": GUILD_MESSAGE_REACTIONS,
    "TYPING_START": GUILD_MESSAGE_TYPING,
}
_CHANNEL_EVENTS = frozenset(e for e in _EVENT_INTENTS if e.startswith(("MESSAGE_", "TYPING_")))
_CONTENT_KEYS = ("content", "embeds", "attachments", "components")
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_ALREADY_AUTHENTICATED = 4005
_HANDSHAKE_FRAMES = 100  # a well-behaved client needs two frames at most


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
        replay_limit: Events a new session keeps for RESUME behind the last one written.
        backlog_limit: Events a new session may hold before it is lost.
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
        self.replay_limit = REPLAY_LIMIT
        self.backlog_limit = BACKLOG_LIMIT
        self._open = anyio.Event()
        self._open.set()
        self._is_closing = False
        self._live: set[GatewayConnection] = set()

    @property
    def live_connections(self) -> int:
        """How many websocket connections are open now (a closed client's is gone)."""
        return len(self._live)

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
        dropped = list(self._live)
        for conn in dropped:
            conn.close(code)
        with anyio.fail_after(5):
            for conn in dropped:
                await conn.closed.wait()
        return len(dropped)

    async def shut_down(self) -> None:
        """Refuse new connections (503), then close the live ones with 1001."""
        self._is_closing = True
        self.release()
        await self.drop(code=1001)

    def send_op(self, op: int, data: Any = None) -> int:
        """Send a control frame (``op`` 7 RECONNECT, 9 INVALID_SESSION) to every session.

        An INVALID_SESSION with ``data`` false also forgets the sessions, so a RESUME
        is refused, as Discord does.

        Returns:
            How many connections it was sent on.
        """
        sent = [conn for conn in self._live if conn.session is not None]
        for conn in sent:
            conn.send_control({"op": op, "d": data})
            if op == 9 and not data and conn.session is not None:
                self.sessions.pop(conn.session.id, None)
        return len(sent)

    def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Number and send one event to every session that would receive it.

        A message event without ``guild_id`` is a direct message: it needs the
        DIRECT_MESSAGES intent instead of GUILD_MESSAGES.
        """
        needed = _EVENT_INTENTS.get(event, 0)
        if event in _CHANNEL_EVENTS and "guild_id" not in data:
            needed = DIRECT_MESSAGES
        if event in _CHANNEL_EVENTS and self._is_hidden(data):
            return
        for session in self.sessions.values():
            if needed and not session.intents & needed:
                continue
            session.append(event, _filter_content(event, data, session, self.store))

    def _is_hidden(self, data: dict[str, Any]) -> bool:
        """Whether the event is in a channel the bot cannot view."""
        channel = self.store.channels.get(int(data.get("channel_id") or 0))
        return channel is not None and channel.bot_denied

    # --- protocol ---------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one gateway connection until either side closes it."""
        if self._is_closing:
            return web.Response(status=503, text="the fake is shutting down")
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        conn = GatewayConnection.open(ws, compress=request.query.get("compress") == "zlib-stream")
        self._live.add(conn)
        try:
            with conn.scope:
                await self._open.wait()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(conn.write)
                    conn.send_control(self._hello())
                    if await self._handshake(conn):
                        await self._read(conn)
                    conn.finish()
        finally:
            self._live.discard(conn)
            if conn.session is not None and conn.session.connection is conn:
                conn.session.connection = None
            with anyio.move_on_after(2, shield=True):
                await ws.close(code=conn.close_code)
            conn.closed.set()
        return ws

    def _hello(self) -> dict[str, Any]:
        return {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}

    async def _receive(self, conn: GatewayConnection) -> dict[str, Any] | None:
        msg = await conn.ws.receive()
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return None
        payload: dict[str, Any] = json.loads(msg.data)
        return payload

    async def _handshake(self, conn: GatewayConnection) -> bool:
        """Wait for IDENTIFY or RESUME and answer it; answer HEARTBEATs meanwhile."""
        for _ in range(_HANDSHAKE_FRAMES):
            payload = await self._receive(conn)
            if payload is None:
                return False
            op, data = payload.get("op"), payload.get("d") or {}
            if op == 1:
                conn.send_control({"op": 11})
            elif op == 2:
                return self._identify(conn, data)
            elif op == 6:
                return self._resume(conn, data)
        conn.close_code = 4002
        return False

    def _new_session(self, intents: int) -> GatewaySession:
        session = GatewaySession(
            id=secrets.token_hex(16),
            intents=intents,
            replay_limit=self.replay_limit,
            backlog_limit=self.backlog_limit,
        )
        self.sessions[session.id] = session
        return session

    def _identify(self, conn: GatewayConnection, data: dict[str, Any]) -> bool:
        if data.get("token") != self.store.token:
            conn.close_code = CLOSE_AUTHENTICATION_FAILED
            return False
        self.identify_count += 1
        session = self._new_session(int(data.get("intents", 0)))
        conn.attach(session, after_seq=0)
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
        session.append("READY", ready)
        if session.intents & GUILDS:
            session.append("GUILD_CREATE", store.guild_payload())
        return True

    def _resume(self, conn: GatewayConnection, data: dict[str, Any]) -> bool:
        session = self.sessions.get(str(data.get("session_id")))
        seq = int(data.get("seq") or 0)
        if (
            self.refuse_resume
            or session is None
            or data.get("token") != self.store.token
            or not session.can_resume_from(seq)
        ):
            self.refused_resume_count += 1
            if session is not None:
                del self.sessions[session.id]
            conn.send_control({"op": 9, "d": False})
            self.store.notify()
            return False
        self.resume_count += 1
        if session.connection is not None:
            session.connection.close(4000)
        conn.attach(session, after_seq=seq)
        session.append("RESUMED", {})
        self.store.notify()
        return True

    async def _read(self, conn: GatewayConnection) -> None:
        session = conn.session
        while session is not None:
            payload = await self._receive(conn)
            if payload is None:
                return
            op = payload.get("op")
            if op == 1:
                conn.send_control({"op": 11})
            elif op == 8:
                session.append("GUILD_MEMBERS_CHUNK", self._chunk(payload.get("d") or {}))
            elif op in (2, 6):
                conn.close_code = CLOSE_ALREADY_AUTHENTICATED
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
    """Blank message content for a session without MESSAGE_CONTENT, as Discord does.

    Direct messages to the bot keep theirs, as on Discord.
    """
    if event not in ("MESSAGE_CREATE", "MESSAGE_UPDATE") or session.intents & MESSAGE_CONTENT:
        return data
    if "guild_id" not in data:
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
