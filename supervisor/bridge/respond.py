"""Answering an interaction within Discord's 3 s: refuse at once, or defer, run, follow up.

A refusal is quick and goes privately as the first answer; anything allowed is deferred
first, since a stop may take ``stop_timeout_seconds``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from supervisor.bridge.access import actor_of
from supervisor.bridge.perform import discord_files, execute

if TYPE_CHECKING:
    from supervisor.bridge.context import BridgeContext
    from supervisor.bridge.perform import Ask
    from supervisor.bridge.replies import Reply
    from supervisor.commands.access import Actor

logger = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
"""Replies quote worker output and names: they ping nobody."""


def is_ours(context: BridgeContext, interaction: discord.Interaction) -> bool:
    """Whether the interaction comes from the one guild dsup serves."""
    return interaction.guild_id == context.guild_id


async def answer(
    context: BridgeContext, interaction: discord.Interaction, ask: Ask, *, ephemeral: bool = False
) -> None:
    """Run ``ask`` for the member behind ``interaction`` and answer them.

    Args:
        context: the command context and access.
        interaction: a slash command or component interaction, not yet answered.
        ask: what they asked.
        ephemeral: answer privately (a refusal always is).
    """
    if not is_ours(context, interaction):
        await refuse_elsewhere(interaction)
        return
    actor = actor_of(context.spec.access, interaction.user)
    limit = interaction.filesize_limit
    if not may(actor, ask):
        reply = await execute(context, actor, ask, filesize_limit=limit)  # refused, audited
        await send_first(interaction, reply)
        return
    await interaction.response.defer(ephemeral=ephemeral, thinking=True)
    reply = await execute(context, actor, ask, filesize_limit=limit)
    await follow_up(interaction, reply, ephemeral=ephemeral)


def may(actor: Actor, ask: Ask) -> bool:
    """Whether ``actor``'s level allows ``ask`` (the context checks again, and audits)."""
    return actor.level >= ask.command.required_level


async def send_first(interaction: discord.Interaction, reply: Reply) -> None:
    """``reply`` as the interaction's first answer."""
    await interaction.response.send_message(
        reply.content,
        files=discord_files(reply),
        ephemeral=reply.ephemeral,
        allowed_mentions=NO_MENTIONS,
    )


async def follow_up(interaction: discord.Interaction, reply: Reply, *, ephemeral: bool) -> None:
    """``reply`` after a defer: it replaces the "thinking..." message."""
    await interaction.followup.send(
        reply.content,
        files=discord_files(reply),
        ephemeral=ephemeral or reply.ephemeral,
        allowed_mentions=NO_MENTIONS,
    )


async def refuse_elsewhere(interaction: discord.Interaction) -> None:
    """The answer outside dsup's guild (a DM, another server): nothing is done there."""
    logger.warning(
        "ignored an interaction from %s outside the configured guild (guild %s)",
        interaction.user,
        interaction.guild_id,
    )
    await interaction.response.send_message(
        "Sorry, this dsup answers only in its own server.", ephemeral=True
    )
