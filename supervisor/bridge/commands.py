"""The slash commands (``/status``, ``/restart``, ``/tail``, ``/logs``...) with autocomplete.

Each command only builds an :class:`Ask` for ``respond.answer``, so slash commands, buttons
and mentions run the same code on the command surface.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands

from supervisor.bridge.access import actor_of
from supervisor.bridge.complete import MAX_CHOICES, rank_targets
from supervisor.bridge.perform import Ask, execute
from supervisor.bridge.respond import answer, is_ours, may, refuse_elsewhere, send_first
from supervisor.bridge.views import SHUTDOWN_QUESTION, shutdown_view
from supervisor.commands.access import AccessLevel
from supervisor.commands.reports import MAX_TAIL_LINES

if TYPE_CHECKING:
    from supervisor.bridge.context import BridgeContext

_NAME = "program, process (name:N), glob (scrape*) or all"
_SIGNALS = ("HUP", "INT", "TERM", "USR1", "USR2", "QUIT", "KILL", "CONT", "STOP", "WINCH")
Lines = app_commands.Range[int, 1, MAX_TAIL_LINES]
StreamChoice = Literal["stdout", "stderr"]


def slash_commands(context: BridgeContext) -> list[app_commands.Command[Any, ..., None]]:
    """The commands, bound to ``context``; add them to the tree for the guild."""

    async def names(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        if not is_ours(context, interaction):
            return []
        if actor_of(context.spec.access, interaction.user).level < AccessLevel.VIEWER:
            return []
        programs, processes = context.service.target_names()
        ranked = rank_targets(current, programs, processes)
        return [app_commands.Choice(name=n, value=n) for n in ranked]

    async def signals(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        typed = current.strip().upper().removeprefix("SIG")
        found = [s for s in _SIGNALS if s.startswith(typed)] or ([current[:100]] if current else [])
        return [app_commands.Choice(name=s, value=s) for s in found[:MAX_CHOICES]]

    @app_commands.command(name="status", description="State, pid, uptime, memory and CPU")
    @app_commands.describe(name=_NAME)
    @app_commands.autocomplete(name=names)
    async def status(interaction: discord.Interaction, name: str = "all") -> None:
        await answer(context, interaction, Ask(verb="status", target=name))

    @app_commands.command(name="start", description="Start stopped processes")
    @app_commands.describe(name=_NAME)
    @app_commands.autocomplete(name=names)
    async def start(interaction: discord.Interaction, name: str) -> None:
        await answer(context, interaction, Ask(verb="start", target=name))

    @app_commands.command(name="stop", description="Stop processes (their whole process tree)")
    @app_commands.describe(name=_NAME)
    @app_commands.autocomplete(name=names)
    async def stop(interaction: discord.Interaction, name: str) -> None:
        await answer(context, interaction, Ask(verb="stop", target=name))

    @app_commands.command(name="restart", description="Stop, then start processes")
    @app_commands.describe(name=_NAME)
    @app_commands.autocomplete(name=names)
    async def restart(interaction: discord.Interaction, name: str) -> None:
        await answer(context, interaction, Ask(verb="restart", target=name))

    @app_commands.command(name="signal", description="Send a signal to running processes")
    @app_commands.describe(name=_NAME, signal="signal name or number: HUP, USR1, 15...")
    @app_commands.autocomplete(name=names, signal=signals)
    async def signal(interaction: discord.Interaction, name: str, signal: str) -> None:
        await answer(context, interaction, Ask(verb="signal", target=name, signal=signal))

    @app_commands.command(name="tail", description="The last lines of a process's output")
    @app_commands.describe(name=_NAME, lines="how many lines (default 20)", stream="which log")
    @app_commands.autocomplete(name=names)
    async def tail(
        interaction: discord.Interaction,
        name: str,
        lines: Lines = 20,
        stream: StreamChoice = "stdout",
    ) -> None:
        await answer(
            context, interaction, Ask(verb="tail", target=name, lines=lines, stream=stream)
        )

    @app_commands.command(name="logs", description="A process's log file, as an attachment")
    @app_commands.describe(name=_NAME, stream="which log")
    @app_commands.autocomplete(name=names)
    async def logs(
        interaction: discord.Interaction, name: str, stream: StreamChoice = "stdout"
    ) -> None:
        await answer(context, interaction, Ask(verb="logs", target=name, stream=stream))

    @app_commands.command(name="reload", description="Re-read the config and apply what changed")
    async def reload(interaction: discord.Interaction) -> None:
        await answer(context, interaction, Ask(verb="reload"))

    @app_commands.command(name="shutdown", description="Stop every process and exit dsup")
    async def shutdown(interaction: discord.Interaction) -> None:
        await confirm_shutdown(context, interaction)

    return [status, start, stop, restart, signal, tail, logs, reload, shutdown]


async def confirm_shutdown(context: BridgeContext, interaction: discord.Interaction) -> None:
    """Ask an admin to confirm with a button; anyone else is refused (and audited)."""
    if not is_ours(context, interaction):
        await refuse_elsewhere(interaction)
        return
    actor = actor_of(context.spec.access, interaction.user)
    ask = Ask(verb="shutdown")
    if not may(actor, ask):
        limit = interaction.filesize_limit
        await send_first(interaction, await execute(context, actor, ask, filesize_limit=limit))
        return
    await interaction.response.send_message(
        SHUTDOWN_QUESTION,
        view=shutdown_view(),
        ephemeral=True,
    )
