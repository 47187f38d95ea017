"""Buttons and select menus that keep working after dsup restarts.

Each ``custom_id`` carries what it acts on (``dsup:restart:web:0``) and the dynamic items are
registered at every start; every click is checked against ``[discord.access]``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal, cast

import discord

from supervisor.bridge.access import actor_of
from supervisor.bridge.perform import Ask, discord_files, execute
from supervisor.bridge.replies import MESSAGE_LIMIT
from supervisor.bridge.respond import (
    NO_MENTIONS,
    answer,
    follow_up,
    is_ours,
    may,
    refuse_elsewhere,
    send_first,
)
from supervisor.bridge.results import button

if TYPE_CHECKING:
    import re
    from collections.abc import Sequence

    from supervisor.bridge.context import BridgeContext

Action = Literal["restart", "stop", "start", "tail", "logs"]
ACTIONS: tuple[Action, ...] = ("restart", "stop", "start", "tail", "logs")
_STYLE = {
    "restart": discord.ButtonStyle.primary,
    "stop": discord.ButtonStyle.danger,
    "start": discord.ButtonStyle.success,
    "tail": discord.ButtonStyle.secondary,
    "logs": discord.ButtonStyle.secondary,
}
_TARGET = r"[A-Za-z0-9_.:*?\[\]!-]{1,80}"  # what the fleet accepts as a target
BUTTON_TEMPLATE = rf"dsup:(?P<action>{'|'.join(ACTIONS)}):(?P<target>{_TARGET})"
PROGRAMS_TEMPLATE = r"dsup:programs:(?P<page>[0-9]{1,2})"
SHUTDOWN_ID = "dsup:shutdown:confirm"
SHUTDOWN_QUESTION = "Stop every process and exit dsup? Nothing restarts it from Discord."
_SHUTDOWN_LABEL = "Yes, stop every process and exit"
OPTIONS_PER_SELECT = 25
"""Discord's cap on a select menu's options."""
MAX_SELECTS = 4
"""Program menus under the board: 100 programs; the board's other rows keep the rest."""
PROCESS_ROWS = 4
"""Process rows in a program's panel, under the row acting on the whole program."""


def button_id(action: Action, target: str) -> str:
    """The ``custom_id`` of the button doing ``action`` on ``target``."""
    return f"dsup:{action}:{target}"


def program_selects(programs: Sequence[str]) -> list[discord.ui.Select[Any]]:
    """The menus of programs under the status board, 25 programs each.

    Picking a program shows the picker, privately, its processes with buttons.
    Put them in a :class:`discord.ui.View` (:func:`board_view`) or, for a
    Components V2 board, each in a :class:`discord.ui.ActionRow`. Past
    ``MAX_SELECTS`` menus, the last one says that ``/status name`` shows the rest.
    """
    menus: list[discord.ui.Select[Any]] = []
    per = OPTIONS_PER_SELECT
    pages = [programs[i : i + per] for i in range(0, len(programs), per)]
    for page, names in enumerate(pages[:MAX_SELECTS]):
        first, last = page * per + 1, page * per + len(names)
        placeholder = (
            "Pick a program to act on it" if len(pages) == 1 else f"Programs {first}-{last}"
        )
        if page == MAX_SELECTS - 1 and len(pages) > MAX_SELECTS:
            placeholder = f"Programs {first}-{last} (/status name for the others)"
        menus.append(
            discord.ui.Select(
                custom_id=f"dsup:programs:{page}",
                placeholder=placeholder,
                options=[discord.SelectOption(label=n[:100], value=n[:100]) for n in names],
            )
        )
    return menus


def board_view(programs: Sequence[str]) -> discord.ui.View:
    """A view of the program menus, for a board sent as content or embeds."""
    view = discord.ui.View(timeout=None)
    for menu in program_selects(programs):
        view.add_item(menu)
    return view


# The views of private answers live in discord.py's view store only as long as their
# interaction token (15 min); the dynamic items answer their clicks at any time.
_ANSWER_VIEW_SECONDS = 900.0


def shutdown_view() -> discord.ui.View:
    """The confirmation button of ``/shutdown``."""
    view = discord.ui.View(timeout=_ANSWER_VIEW_SECONDS)
    view.add_item(
        discord.ui.Button(
            label=_SHUTDOWN_LABEL, style=discord.ButtonStyle.danger, custom_id=SHUTDOWN_ID
        )
    )
    return view


def shutdown_attach() -> str:
    """The confirmation button of ``/shutdown`` as an outbox row keeps it (``attach``).

    Its dynamic item answers the click, also after the row was sent by a later dsup.
    """
    danger = discord.ButtonStyle.danger
    return json.dumps({"buttons": [button(_SHUTDOWN_LABEL, SHUTDOWN_ID, style=danger)]})


def panel_view(program: str, processes: Sequence[str]) -> discord.ui.View:
    """Buttons for ``program`` as a whole, then for each of its first processes."""
    view = discord.ui.View(timeout=_ANSWER_VIEW_SECONDS)
    targets = [program, *processes[:PROCESS_ROWS]] if len(processes) > 1 else [program]
    for row, target in enumerate(targets):
        for action in ACTIONS:
            label = f"{action} {target}" if action == "restart" else action
            view.add_item(
                discord.ui.Button(
                    label=label[:80],
                    style=_STYLE[action],
                    custom_id=button_id(action, target),
                    row=row,
                )
            )
    return view


def dynamic_items(context: BridgeContext) -> tuple[type[discord.ui.DynamicItem[Any]], ...]:
    """The persistent components' classes, bound to ``context``: for ``add_dynamic_items``."""

    class ProcessButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=BUTTON_TEMPLATE):
        """restart / stop / start / tail / logs of one target."""

        def __init__(self, action: Action, target: str) -> None:
            super().__init__(discord.ui.Button(label=action, custom_id=button_id(action, target)))
            self.action: Action = action
            self.target = target

        @classmethod
        async def from_custom_id(
            cls,
            interaction: discord.Interaction,
            item: discord.ui.Item[Any],
            match: re.Match[str],
        ) -> ProcessButton:
            return cls(cast("Action", match["action"]), match["target"])

        async def callback(self, interaction: discord.Interaction) -> None:
            await answer(
                context, interaction, Ask(verb=self.action, target=self.target), ephemeral=True
            )

    class ProgramMenu(discord.ui.DynamicItem[discord.ui.Select[Any]], template=PROGRAMS_TEMPLATE):
        """A menu of programs under the board."""

        def __init__(self, menu: discord.ui.Select[Any]) -> None:
            super().__init__(menu)

        @classmethod
        async def from_custom_id(
            cls,
            interaction: discord.Interaction,
            item: discord.ui.Item[Any],
            match: re.Match[str],
        ) -> ProgramMenu:
            return cls(cast("discord.ui.Select[Any]", item))

        async def callback(self, interaction: discord.Interaction) -> None:
            values = self.item.values
            if values:
                await show_panel(context, interaction, values[0])

    class ShutdownButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=SHUTDOWN_ID):
        """The confirmation of ``/shutdown``."""

        def __init__(self) -> None:
            super().__init__(discord.ui.Button(custom_id=SHUTDOWN_ID))

        @classmethod
        async def from_custom_id(
            cls,
            interaction: discord.Interaction,
            item: discord.ui.Item[Any],
            match: re.Match[str],
        ) -> ShutdownButton:
            return cls()

        async def callback(self, interaction: discord.Interaction) -> None:
            await answer(context, interaction, Ask(verb="shutdown"))

    return (ProcessButton, ProgramMenu, ShutdownButton)


async def show_panel(
    context: BridgeContext, interaction: discord.Interaction, program: str
) -> None:
    """Show the picker, privately, ``program``'s processes with their buttons."""
    if not is_ours(context, interaction):
        await refuse_elsewhere(interaction)
        return
    actor = actor_of(context.spec.access, interaction.user)
    ask = Ask(verb="status", target=program)
    limit = interaction.filesize_limit
    if not may(actor, ask):
        await send_first(interaction, await execute(context, actor, ask, filesize_limit=limit))
        return
    await interaction.response.defer(ephemeral=True, thinking=True)
    reply = await execute(context, actor, ask, filesize_limit=limit)
    processes = [n for n in context.service.target_names()[1] if n.startswith(f"{program}:")]
    if not processes:  # gone since the board was drawn, or refused: just the answer
        await follow_up(interaction, reply, ephemeral=True)
        return
    content = reply.content
    if len(processes) > PROCESS_ROWS:
        note = f"\nThe first row acts on all {len(processes)}; /restart {program}:N on one."
        content += note if len(content) + len(note) <= MESSAGE_LIMIT else ""
    await interaction.followup.send(
        content,
        files=discord_files(reply),
        view=panel_view(program, processes),
        ephemeral=True,
        allowed_mentions=NO_MENTIONS,
    )
