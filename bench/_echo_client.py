"""Bench client of ``gateway_echo.py``: dsup's ``BridgeClient`` against the fake, timed.

argv: api_base gateway_url token guild_id. Prints ``ready`` once connected; then, for each
direct message ``start`` ... ``end``, ``cpu S``: this process's CPU seconds between them.
``quit`` closes it. No commands, board or relay: only what discord.py and the client do
with the gateway's events.
"""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import anyio

from supervisor.bridge.client import BridgeClient
from tests.discord_fake.connect import DiscordEndpoints, set_endpoints

if TYPE_CHECKING:
    import discord

    from supervisor.bridge.context import BridgeContext


class EchoProbe(BridgeClient):
    """The bridge's client with nothing installed, answering the bench's markers."""

    started = 0.0

    async def setup_hook(self) -> None:
        """Install no commands: the echoes are what is measured."""

    async def on_connect(self) -> None:
        """No task desk to tell."""

    async def on_ready(self) -> None:
        """Tell the bench."""
        print("ready", flush=True)

    async def on_message(self, message: discord.Message) -> None:
        """Time from ``start`` to ``end``; close at ``quit``."""
        if message.content == "start":
            self.started = time.process_time()
        elif message.content == "end":
            print(f"cpu {time.process_time() - self.started:.6f}", flush=True)
        elif message.content == "quit":
            await self.close()


async def main() -> None:
    """Connect and serve until ``quit``."""
    api_base, gateway_url, token, guild_id = sys.argv[1:5]
    set_endpoints(DiscordEndpoints(api_base=api_base, gateway_url=gateway_url))
    context = cast("BridgeContext", SimpleNamespace(guild_id=int(guild_id)))
    async with EchoProbe(context) as client:
        await client.start(token)


if __name__ == "__main__":
    anyio.run(main, backend="asyncio")
