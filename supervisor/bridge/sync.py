"""Registering the slash commands in the guild only when their definition changed.

Discord allows 200 command creations a day per guild; the digest of what was last registered
is kept in the ledger, so a bridge restarting in a loop spends none.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

import anyio
import discord

from supervisor.commands.reports import DiscordSyncReport

if TYPE_CHECKING:
    from discord import app_commands

    from supervisor.state.command_sync import CommandSyncStore

logger = logging.getLogger(__name__)


def command_digest(tree: app_commands.CommandTree[Any], guild_id: int) -> str:
    """A digest of the guild's commands as they would be registered (name, options...)."""
    guild = discord.Object(id=guild_id)
    payload = [c.to_dict(tree) for c in tree.get_commands(guild=guild)]
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class CommandSync:
    """Registers one tree's guild commands, remembering what it registered."""

    def __init__(
        self, tree: app_commands.CommandTree[Any], guild_id: int, store: CommandSyncStore
    ) -> None:
        """Sync ``tree``'s commands for ``guild_id``; ``store`` keeps the digest."""
        self._tree = tree
        self._guild_id = guild_id
        self._store = store

    async def sync_if_changed(self) -> DiscordSyncReport | None:
        """Register the commands if they changed or are missing; None when nothing was sent.

        Costs one GET when nothing changed (to see that the guild still has them).

        Raises:
            discord.HTTPException: Discord refused or failed a request.
        """
        digest = command_digest(self._tree, self._guild_id)
        stored = await anyio.to_thread.run_sync(self._store.digest, self._guild_id)
        if stored == digest:
            guild = discord.Object(id=self._guild_id)
            registered = {c.name for c in await self._tree.fetch_commands(guild=guild)}
            ours = {c.name for c in self._tree.get_commands(guild=guild)}
            if registered == ours:
                logger.debug("slash commands unchanged in guild %d", self._guild_id)
                return None
            logger.info("guild %d lacks some slash commands: registering them", self._guild_id)
        return await self.sync()

    async def sync(self) -> DiscordSyncReport:
        """Register the commands now (``dsup ctl discord-sync``), changed or not.

        Raises:
            discord.HTTPException: Discord refused or failed the request.
        """
        digest = command_digest(self._tree, self._guild_id)
        synced = await self._tree.sync(guild=discord.Object(id=self._guild_id))
        await anyio.to_thread.run_sync(self._store.record, self._guild_id, digest)
        names = tuple(c.name for c in synced)
        logger.info("registered %d slash commands in guild %d", len(names), self._guild_id)
        return DiscordSyncReport(guild_id=self._guild_id, commands=names)
