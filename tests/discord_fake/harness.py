"""Run an unmodified discord.py client against the fake, bounded in time.

Tests own the client's lifetime through :func:`run_client`: the client runs as one task
of a task group, the block starts once ``on_ready`` has fired, and leaving the block
closes the client (shielded, bounded) before the task group ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

import anyio
import discord

ClientT = TypeVar("ClientT", bound=discord.Client)

GUILD_READY_TIMEOUT = 0.2
"""Seconds discord.py waits after the last GUILD_CREATE before ``on_ready``.

discord.py's default (2 s) is a per-login tax in tests; the fake sends GUILD_CREATE
right after READY, so a short wait is enough. Pass it as ``guild_ready_timeout=``.
"""


def intents_for_tests() -> discord.Intents:
    """Default intents plus MESSAGE_CONTENT (privileged; the fake grants it)."""
    intents = discord.Intents.default()
    intents.message_content = True
    return intents


@contextlib.asynccontextmanager
async def run_client(
    client: ClientT, token: str, *, ready_timeout: float = 10.0, close_timeout: float = 5.0
) -> AsyncIterator[ClientT]:
    """Start ``client`` with ``token``, wait for ``on_ready``, close it on exit.

    Args:
        client: A :class:`discord.Client` (or ``commands.Bot``) not yet started.
        token: The bot token.
        ready_timeout: Seconds to reach ``on_ready``.
        close_timeout: Seconds allowed for ``client.close()`` on exit.

    Raises:
        TimeoutError: The client was not ready in time.
        discord.LoginFailure: The token was refused (from the client task).
    """
    async with client, anyio.create_task_group() as tg:
        tg.start_soon(client.start, token)
        try:
            with anyio.fail_after(ready_timeout):
                await client.wait_until_ready()
            yield client
        finally:
            with anyio.move_on_after(close_timeout, shield=True):
                await client.close()
