"""Modals: the bot opens one (from a command or a button), a user fills it in and submits."""

from __future__ import annotations

from typing import Any

import discord
import pytest
from discord.ext import commands

from tests.discord_fake import FakeDiscord, intents_for_tests, run_client
from tests.discord_fake.harness import GUILD_READY_TIMEOUT
from tests.discord_fake.pytest_plugin import fake_discord

__all__ = ["fake_discord"]


class Note(discord.ui.Modal, title="Leave a note"):
    text: discord.ui.TextInput[Any] = discord.ui.TextInput(label="Note", custom_id="note")
    extra: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="More", custom_id="more", required=False
    )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        where = "message" if interaction.message is not None else "command"
        await interaction.response.send_message(
            f"{where}: {self.text.value} / {self.extra.value}", ephemeral=True
        )


class Opener(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Write", custom_id="write")
    async def write(
        self, interaction: discord.Interaction, button: discord.ui.Button[Opener]
    ) -> None:
        await interaction.response.send_modal(Note())


class Bot(commands.Bot):
    def __init__(self) -> None:
        super().__init__(
            command_prefix="!", intents=intents_for_tests(), guild_ready_timeout=GUILD_READY_TIMEOUT
        )

    async def setup_hook(self) -> None:
        @self.tree.command()
        async def note(interaction: discord.Interaction) -> None:
            """Open the note modal."""
            await interaction.response.send_modal(Note())

        @self.tree.command()
        async def board(interaction: discord.Interaction) -> None:
            """Post a button that opens the note modal."""
            await interaction.response.send_message("notes", view=Opener())

        await self.tree.sync()


async def test_modal_from_a_command_is_submitted_with_its_values(fake_discord: FakeDiscord) -> None:
    ada = fake_discord.add_user("ada")
    async with run_client(Bot(), fake_discord.token):
        opened = fake_discord.invoke(ada, "general", "note")
        modal = await opened.wait_reply()
        assert modal.type == 9
        assert modal.data["title"] == "Leave a note"
        with pytest.raises(LookupError, match="needs 'note'"):
            fake_discord.submit_modal(opened, {})
        with pytest.raises(LookupError, match="no text input"):
            fake_discord.submit_modal(opened, {"note": "x", "nope": "y"})
        submitted = fake_discord.submit_modal(opened, {"note": "disk is full"})
        answer = await submitted.wait_reply()
    assert submitted.type == 5
    assert answer.content == "command: disk is full / "


async def test_modal_from_a_button_carries_its_message(fake_discord: FakeDiscord) -> None:
    bo = fake_discord.add_user("bo")
    async with run_client(Bot(), fake_discord.token):
        posted = await fake_discord.invoke(bo, "general", "board").wait_reply()
        assert posted.message is not None
        click = fake_discord.click(bo, int(posted.message["id"]), "write")
        await click.wait_reply()
        submitted = fake_discord.submit_modal(click, {"note": "hi", "more": "there"})
        answer = await submitted.wait_reply()
        with pytest.raises(LookupError, match="not answered with a modal"):
            fake_discord.submit_modal(submitted, {"note": "again"})
    assert submitted.payload["message"]["id"] == posted.message["id"]
    assert answer.content == "message: hi / there"
