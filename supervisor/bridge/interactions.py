"""Slash commands, views and mention commands: what Discord users can ask of the node.

``install(client)`` runs from the client's ``setup_hook``. Every command goes
through the command surface with a Discord :class:`Actor`, so access checks and
audit rows are the ones ``dsup ctl`` has. The interactions engineer extends this
module (access, the other commands, autocomplete, buttons, mentions, sync); the
bridge core only relies on ``install`` and ``on_guild_message``.
"""

from __future__ import annotations

import io
import logging
import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from supervisor import humanize
from supervisor.commands.access import AccessLevel, Actor
from supervisor.errors import AccessDenied, SupervisorError

if TYPE_CHECKING:
    from supervisor.bridge.client import BridgeClient
    from supervisor.commands.reports import StatusReport
    from supervisor.config.schema import AccessSpec

logger = logging.getLogger(__name__)

_MESSAGE_CHARS = 2000
_ALIVE = ("STARTING", "RUNNING", "STOPPING")


async def install(client: BridgeClient) -> None:
    """Add the commands to ``client.tree`` for the served guild and sync them."""
    guild = discord.Object(id=client.context.guild_id)

    @app_commands.command(name="status", description="Show the state of the node's processes")
    @app_commands.describe(name="a process, a program, a glob or 'all' (default)")
    async def status(interaction: discord.Interaction[BridgeClient], name: str = "all") -> None:
        await _status(interaction, name)

    client.tree.add_command(status, guild=guild)
    await client.tree.sync(guild=guild)


async def on_guild_message(client: BridgeClient, message: discord.Message) -> None:
    """A message in the served guild (mention commands go here); ignored for now."""


def actor_for(user: discord.abc.User, access: AccessSpec) -> Actor:
    """The actor a Discord user is: the highest level their roles or id are granted."""
    roles = {role.id for role in getattr(user, "roles", ())}
    ids = roles | {user.id}
    grants = (
        (AccessLevel.ADMIN, access.admin),
        (AccessLevel.OPERATOR, access.operator),
        (AccessLevel.VIEWER, access.viewer),
    )
    level = next((lvl for lvl, granted in grants if ids & set(granted)), AccessLevel.NONE)
    return Actor(name=f"{user} ({user.id})", source="discord", level=level)


async def _status(interaction: discord.Interaction[BridgeClient], target: str) -> None:
    # Sampling CPU may take longer than Discord's 3 s on a big fleet: defer first.
    await interaction.response.defer(ephemeral=True, thinking=True)
    context = interaction.client.context
    actor = actor_for(interaction.user, context.spec.access)
    try:
        report = await context.service.status(actor, target)
    except AccessDenied as exc:
        await interaction.followup.send(_refusal(exc), ephemeral=True)
        return
    except SupervisorError as exc:
        await interaction.followup.send(str(exc)[:_MESSAGE_CHARS], ephemeral=True)
        return
    table = render_status_text(report)
    block = f"```\n{table}\n```"
    if len(block) <= _MESSAGE_CHARS:
        await interaction.followup.send(block, ephemeral=True)
        return
    count = humanize.plural(len(report.processes), "process")
    attachment = discord.File(io.BytesIO(table.encode()), filename="status.txt")
    await interaction.followup.send(
        f"{report.node}: {count}; the table is attached.", file=attachment, ephemeral=True
    )


def _refusal(exc: AccessDenied) -> str:
    return (
        f"Sorry, that needs the {exc.required.lower()} level, and you have "
        f"{'none' if exc.level == 'NONE' else 'only ' + exc.level.lower()}. "
        "Ask an admin of this node to grant it in [discord.access]."
    )


def render_status_text(report: StatusReport) -> str:
    """``status`` as an aligned text table: name, state, pid, uptime, restarts, memory, CPU."""
    rows = [("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "MEMORY", "CPU")]
    now = report.at or time.time()
    for info in report.processes:
        st = info.status
        up = st.state.value in _ALIVE and st.started_at is not None
        rows.append(
            (
                st.process,
                st.state.value,
                "-" if st.pid is None else str(st.pid),
                humanize.duration(now - st.started_at) if up and st.started_at else "-",
                str(st.restarts),
                humanize.memory(info.rss_bytes),
                humanize.cpu(info.cpu_percent),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
