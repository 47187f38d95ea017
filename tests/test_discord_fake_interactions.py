"""Interaction answers beyond the basics: ephemeral buttons, selects, files, originals."""

from __future__ import annotations

import io

import anyio
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.discord_fake import FakeDiscord, intents_for_tests, run_client
from tests.discord_fake.harness import GUILD_READY_TIMEOUT
from tests.discord_fake.pytest_plugin import fake_discord

__all__ = ["fake_discord"]

EPHEMERAL = 64


class Confirm(discord.ui.View):
    @discord.ui.button(label="Confirm", custom_id="confirm")
    async def confirm(
        self, interaction: discord.Interaction, button: discord.ui.Button[Confirm]
    ) -> None:
        await interaction.response.edit_message(content="confirmed", view=None)


class Pick(discord.ui.View):
    @discord.ui.select(
        custom_id="pick",
        options=[discord.SelectOption(label="a"), discord.SelectOption(label="b")],
    )
    async def pick(self, interaction: discord.Interaction, select: discord.ui.Select[Pick]) -> None:
        await interaction.response.defer()  # type 6: deferred update of the message
        await interaction.edit_original_response(content=f"picked {select.values}", view=None)


class Bot(commands.Bot):
    """Global commands (no guild) answering in the ways these tests look at."""

    def __init__(self) -> None:
        super().__init__(
            command_prefix="!", intents=intents_for_tests(), guild_ready_timeout=GUILD_READY_TIMEOUT
        )
        self.synced: list[app_commands.AppCommand] = []
        self.seen_original: list[tuple[str, list[str]]] = []
        self.done = anyio.Event()

    async def setup_hook(self) -> None:
        tree = self.tree

        @tree.command()
        async def ask(interaction: discord.Interaction) -> None:
            """Ask for confirmation, privately."""
            await interaction.response.send_message("sure?", view=Confirm(), ephemeral=True)

        @tree.command()
        async def menu(interaction: discord.Interaction, private: bool = False) -> None:
            """Offer a select menu."""
            await interaction.response.send_message("choose", view=Pick(), ephemeral=private)

        @tree.command()
        async def report(interaction: discord.Interaction) -> None:
            """Answer with a file, then edit the original response with another."""
            file = discord.File(io.BytesIO(b"first"), "a.txt")
            await interaction.response.send_message("one", file=file)
            original = await interaction.original_response()
            self.seen_original.append(
                (original.content, [a.filename for a in original.attachments])
            )
            second = discord.File(io.BytesIO(b"second"), "b.txt")
            edited = await interaction.edit_original_response(
                content="one two", attachments=[second]
            )
            self.seen_original.append((edited.content, [a.filename for a in edited.attachments]))
            again = await interaction.followup.fetch_message(edited.id)  # GET, not cached
            self.seen_original.append((again.content, [a.filename for a in again.attachments]))
            self.done.set()

        self.synced = await tree.sync()


async def test_ephemeral_prompt_button_can_be_clicked(fake_discord: FakeDiscord) -> None:
    """Regression (audit 6): buttons on ephemeral messages could not be clicked."""
    ada = fake_discord.add_user("ada")
    eve = fake_discord.add_user("eve")
    async with run_client(Bot(), fake_discord.token):
        asked = fake_discord.invoke(ada, "general", "ask")
        prompt = await asked.wait_reply()
        assert prompt.message is not None
        prompt_id = int(prompt.message["id"])
        with pytest.raises(LookupError, match="ephemeral"):
            fake_discord.click(eve, prompt_id, "confirm")
        click = fake_discord.click(ada, prompt_id, "confirm")
        update = await click.wait_reply()
    assert click.payload["message"]["flags"] & EPHEMERAL
    assert (update.type, update.content) == (7, "confirmed")
    assert update.message is not None
    assert update.message["flags"] & EPHEMERAL
    assert update.message["components"] == []
    assert fake_discord.bot_actions() == []  # nothing public happened


@pytest.mark.parametrize("private", [False, True])
async def test_select_menu_defer_update_then_edit(fake_discord: FakeDiscord, private: bool) -> None:
    bo = fake_discord.add_user("bo")
    async with run_client(Bot(), fake_discord.token):
        run = fake_discord.invoke(bo, "general", "menu", private=private)
        shown = await run.wait_reply()
        assert shown.message is not None
        pick = fake_discord.click(bo, int(shown.message["id"]), "pick", values=["b"])
        deferred = await pick.wait_reply()
        edited = await pick.wait_reply(kind="edit")
    assert pick.payload["data"] == {"custom_id": "pick", "component_type": 3, "values": ["b"]}
    assert deferred.type == 6
    assert edited.content == "picked ['b']"
    assert edited.message is not None
    assert edited.message["id"] == shown.message["id"]
    public = [(a.kind, a.content) for a in fake_discord.bot_actions("general")]
    assert public == ([] if private else [("create", "choose"), ("edit", "picked ['b']")])


async def test_callback_with_file_and_original_response(fake_discord: FakeDiscord) -> None:
    cy = fake_discord.add_user("cy")
    bot = Bot()
    async with run_client(bot, fake_discord.token):
        run = fake_discord.invoke(cy, "general", "report")
        answer = await run.wait_reply()
        edit = await run.wait_reply(kind="edit")
        with anyio.fail_after(5):
            await bot.done.wait()
    assert answer.message is not None
    assert [a["filename"] for a in answer.message["attachments"]] == ["a.txt"]
    assert bot.seen_original == [("one", ["a.txt"]), ("one two", ["b.txt"]), ("one two", ["b.txt"])]
    assert edit.content == "one two"
    assert "attachments_out" not in answer.data  # the fake's bookkeeping stays private
    (stored,) = fake_discord.bot_messages("general")
    assert [a["filename"] for a in stored["attachments"]] == ["b.txt"]


async def test_global_commands_sync_fetch_and_invoke(fake_discord: FakeDiscord) -> None:
    dee = fake_discord.add_user("dee")
    bot = Bot()
    async with run_client(bot, fake_discord.token):
        fetched = await bot.tree.fetch_commands()
        run = fake_discord.invoke(dee, "general", "menu")
        await run.wait_reply()
    assert {c.name for c in bot.synced} == {"ask", "menu", "report"}
    assert all(c.guild_id is None for c in bot.synced)
    assert {c.id for c in fetched} == {c.id for c in bot.synced}
    assert "guild_id" not in run.payload["data"]
