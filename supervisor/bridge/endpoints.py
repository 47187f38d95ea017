"""Pointing discord.py at ``api_base`` and ``gateway_url``: Discord, a compatible server, a fake.

discord.py builds every REST URL (interaction callbacks and follow-ups included)
from the class attribute ``discord.http.Route.BASE``, and a plain ``Client`` dials
``DiscordWebSocket.DEFAULT_GATEWAY`` (again after an INVALID_SESSION) without asking
``GET /gateway/bot``; a RESUME uses the ``resume_gateway_url`` the server sent. So
setting those two attributes, and nothing else, honours both config keys.
"""

from __future__ import annotations

import discord.gateway
import discord.http
import yarl


def point_discord_at(api_base: str, gateway_url: str) -> None:
    """Send every discord.py client of this process to ``api_base`` and ``gateway_url``.

    Args:
        api_base: the REST base with its version, e.g. ``https://discord.com/api/v10``.
        gateway_url: the websocket, e.g. ``wss://gateway.discord.gg``.
    """
    discord.http.Route.BASE = api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
