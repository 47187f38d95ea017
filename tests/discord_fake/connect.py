"""Point unmodified discord.py at a Discord-compatible server (the fake, or another).

discord.py has no public option for its API base. It builds every REST URL, including
interaction callbacks and follow-up webhooks, from one class attribute,
``discord.http.Route.BASE`` (its own ``_set_api_version`` rewrites that attribute), and a
plain :class:`discord.Client` dials ``DiscordWebSocket.DEFAULT_GATEWAY``, another class
attribute, without asking ``GET /gateway/bot``. After READY it resumes on the
``resume_gateway_url`` the server sent, and after INVALID_SESSION it falls back to
``DEFAULT_GATEWAY`` again.

So the least invasive way is to set exactly those two class attributes, and nothing
else: no function is replaced, no private attribute touched, no TLS interception. The
alternatives were worse: an HTTP proxy (discord.py's ``proxy=``) only sees HTTPS as an
opaque CONNECT tunnel, so it would need a man-in-the-middle certificate for discord.com;
a custom connector or resolver also needs that certificate; subclassing ``HTTPClient`` or
``DiscordWebSocket`` means depending on private call paths (``Client.connect`` names
``DiscordWebSocket`` directly). ``AutoShardedClient`` does call ``GET /gateway/bot`` but
would force sharding on the bridge.

The gateway URL is discovered with a real ``GET /gateway/bot`` (:func:`discover_gateway`)
so the server, not the caller, decides where its websocket lives. Both attributes are
process-wide: set them before a client logs in, and restore them afterwards (the context
manager does). The production bridge will reuse this module's approach.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
import anyio
import discord.gateway
import discord.http
import yarl

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscordEndpoints:
    """Where discord.py sends REST requests and where it dials the gateway."""

    api_base: str
    gateway_url: str


def current_endpoints() -> DiscordEndpoints:
    """Return what discord.py is pointed at now."""
    return DiscordEndpoints(
        api_base=discord.http.Route.BASE,
        gateway_url=str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY),
    )


def set_endpoints(endpoints: DiscordEndpoints) -> DiscordEndpoints:
    """Point every discord.py client of this process at ``endpoints``.

    Args:
        endpoints: ``api_base`` such as ``http://127.0.0.1:8080/api/v10`` (no trailing
            slash) and ``gateway_url`` such as ``ws://127.0.0.1:8080/gateway``.

    Returns:
        The previous endpoints, to restore later.
    """
    previous = current_endpoints()
    discord.http.Route.BASE = endpoints.api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(endpoints.gateway_url)
    return previous


async def discover_gateway(api_base: str, token: str, *, timeout_seconds: float = 10.0) -> str:
    """Ask the server for its gateway URL (``GET /gateway/bot``), as Discord clients do.

    Raises:
        aiohttp.ClientResponseError: The server refused (401 for a wrong token).
        TimeoutError: No answer within ``timeout_seconds``.
    """
    headers = {"Authorization": f"Bot {token}"}
    with anyio.fail_after(timeout_seconds):
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{api_base.rstrip('/')}/gateway/bot", headers=headers) as response,
        ):
            response.raise_for_status()
            data = await response.json()
    return str(data["url"])


@contextlib.contextmanager
def pointed_at(endpoints: DiscordEndpoints) -> Iterator[DiscordEndpoints]:
    """Point discord.py at ``endpoints`` for the block, then restore the previous ones."""
    previous = set_endpoints(endpoints)
    try:
        yield endpoints
    finally:
        set_endpoints(previous)


@contextlib.asynccontextmanager
async def use_discord_api(api_base: str, token: str) -> AsyncIterator[DiscordEndpoints]:
    """Discover the gateway of the server at ``api_base`` and point discord.py there.

    Args:
        api_base: The REST base including the version, e.g. ``http://127.0.0.1:8080/api/v10``.
        token: The bot token, needed by ``GET /gateway/bot``.
    """
    gateway_url = await discover_gateway(api_base, token)
    with pointed_at(DiscordEndpoints(api_base=api_base, gateway_url=gateway_url)) as endpoints:
        yield endpoints
