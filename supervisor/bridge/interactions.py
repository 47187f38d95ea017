"""What Discord users can ask of the node: slash commands, buttons, menus, mentions.

``install(client)`` adds them from ``setup_hook`` and registers the commands when they changed;
every request goes through the command surface as a Discord actor, audited as ``ctl``'s are.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from supervisor.bridge.commands import slash_commands
from supervisor.bridge.mention import handle_message
from supervisor.bridge.questions import answer_items
from supervisor.bridge.sync import CommandSync
from supervisor.bridge.tasks import cancel_button, task_commands
from supervisor.bridge.views import board_view, dynamic_items
from supervisor.commands.access import Command
from supervisor.errors import Unavailable
from supervisor.state.command_sync import CommandSyncStore

if TYPE_CHECKING:
    from supervisor.bridge.client import BridgeClient
    from supervisor.commands.reports import DiscordSyncReport

logger = logging.getLogger(__name__)


async def install(client: BridgeClient) -> None:
    """Add the commands and components to ``client`` and register what changed.

    A failed registration is logged, not raised: the bridge serves the commands
    already registered, and ``dsup ctl discord-sync`` can try again.
    """
    context = client.context
    guild = discord.Object(id=context.guild_id)
    for command in [*slash_commands(context), *task_commands(context)]:
        client.tree.add_command(command, guild=guild)
    client.add_dynamic_items(
        *dynamic_items(context), *answer_items(context), cancel_button(context)
    )
    client.board_view_factory = lambda: board_view(context.service.target_names()[0])
    sync = CommandSync(client.tree, context.guild_id, CommandSyncStore(context.ledger))

    async def sync_now() -> DiscordSyncReport:
        if client.is_closed():
            raise Unavailable(Command.DISCORD_SYNC.value, "the Discord bridge is not connected")
        try:
            return await sync.sync()
        except discord.HTTPException as exc:
            raise Unavailable(
                Command.DISCORD_SYNC.value, f"Discord refused it (HTTP {exc.status}): {exc.text}"
            ) from None

    context.service.set_discord_sync(sync_now)
    try:
        await sync.sync_if_changed()
    except discord.HTTPException as exc:
        logger.warning(
            "discord: the slash commands could not be registered (%s %s); "
            "`dsup ctl discord-sync` tries again",
            exc.status,
            exc.text,
        )


async def on_guild_message(client: BridgeClient, message: discord.Message) -> None:
    """A message in the served guild from someone else: a task in the task channel, or a
    command when it mentions the bot."""
    if client.user is None:
        return
    desk = client.task_desk
    if desk is not None and await desk.handle(client.user, message):
        return
    await handle_message(client.context, client.user, message)
