"""Pointing discord.py at ``api_base`` and ``gateway_url``: Discord, a compatible server, a fake.

discord.py builds every REST URL from ``Route.BASE`` and dials ``DEFAULT_GATEWAY`` without
asking ``GET /gateway/bot``, so setting those two attributes honours both config keys.
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
