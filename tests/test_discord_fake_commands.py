"""commands.Bot with an app_commands tree against the fake: sync, slash, autocomplete, buttons."""

from __future__ import annotations

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.discord_fake import FakeDiscord, intents_for_tests, run_client
from tests.discord_fake.harness import GUILD_READY_TIMEOUT
from tests.discord_fake.pytest_plugin import fake_discord

__all__ = ["fake_discord"]

PROGRAMS = ["ingest", "indexer", "scraper", "mailer"]


class RestartView(discord.ui.View):
    def __init__(self, program: str) -> None:
        super().__init__(timeout=30)
        self.program = program

    @discord.ui.button(label="Restart", custom_id="restart", style=discord.ButtonStyle.danger)
    async def restart(
        self, interaction: discord.Interaction, button: discord.ui.Button[RestartView]
    ) -> None:
        await interaction.response.edit_message(content=f"restarting {self.program}", view=None)


class Bot(commands.Bot):
    def __init__(self, guild_id: int) -> None:
        super().__init__(
            command_prefix="!",
            intents=intents_for_tests(),
            guild_ready_timeout=GUILD_READY_TIMEOUT,
        )
        self.guild = discord.Object(id=guild_id)
        self.synced: list[app_commands.AppCommand] = []

    async def setup_hook(self) -> None:
        tree = self.tree

        @tree.command(guild=self.guild)
        @app_commands.describe(program="The program to look at")
        async def status(interaction: discord.Interaction, program: str, lines: int = 10) -> None:
            """Show a program's status."""
            roles = [r.name for r in getattr(interaction.user, "roles", [])]
            await interaction.response.send_message(
                f"{program}: running ({lines} lines) for {interaction.user.name} {roles}",
                view=RestartView(program),
            )

        @status.autocomplete("program")
        async def program_choices(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            return [app_commands.Choice(name=p, value=p) for p in PROGRAMS if p.startswith(current)]

        @tree.command(guild=self.guild)
        async def tail(interaction: discord.Interaction, program: str) -> None:
            """Tail a program's log (slow: defers, then follows up)."""
            await interaction.response.defer(thinking=True)
            await interaction.followup.send(f"last lines of {program}")
            await interaction.followup.send("more", ephemeral=True)

        self.synced = await tree.sync(guild=self.guild)


async def test_bot_syncs_commands_with_ids(fake_discord: FakeDiscord) -> None:
    async with run_client(Bot(fake_discord.guild_id), fake_discord.token) as bot:
        synced = {c.name: c for c in bot.synced}
        fetched = await bot.tree.fetch_commands(guild=bot.guild)
    assert set(synced) == {"status", "tail"}
    assert all(c.id > 0 and c.guild_id == fake_discord.guild_id for c in synced.values())
    assert {c.id for c in fetched} == {c.id for c in synced.values()}
    option = synced["status"].options[0]
    assert isinstance(option, app_commands.Argument)
    assert (option.name, option.description, option.autocomplete) == (
        "program",
        "The program to look at",
        True,
    )


async def test_slash_command_with_option_and_button_click(fake_discord: FakeDiscord) -> None:
    dana = fake_discord.add_user("dana", roles=("operator",))
    async with run_client(Bot(fake_discord.guild_id), fake_discord.token):
        run = fake_discord.invoke(dana, "ops", "status", program="ingest", lines=3)
        reply = await run.wait_reply()
        assert reply.type == 4
        assert reply.content == "ingest: running (3 lines) for dana ['@everyone', 'operator']"
        assert reply.message is not None
        click = fake_discord.click(dana, int(reply.message["id"]), "restart")
        update = await click.wait_reply()
    assert update.type == 7
    assert update.content == "restarting ingest"
    assert update.message is not None
    assert update.message["components"] == []
    kinds = [(a.kind, a.content) for a in fake_discord.bot_actions("ops")]
    assert kinds == [
        ("create", "ingest: running (3 lines) for dana ['@everyone', 'operator']"),
        ("edit", "restarting ingest"),
    ]


async def test_autocomplete_returns_choices(fake_discord: FakeDiscord) -> None:
    erin = fake_discord.add_user("erin")
    async with run_client(Bot(fake_discord.guild_id), fake_discord.token):
        typing = fake_discord.autocomplete(erin, "ops", "status", "program", program="in")
        reply = await typing.wait_reply()
    assert reply.type == 8
    assert reply.choices == [
        {"name": "ingest", "value": "ingest"},
        {"name": "indexer", "value": "indexer"},
    ]
    assert fake_discord.bot_actions() == []


async def test_defer_then_followups(fake_discord: FakeDiscord) -> None:
    frank = fake_discord.add_user("frank")
    async with run_client(Bot(fake_discord.guild_id), fake_discord.token):
        run = fake_discord.invoke(frank, "general", "tail", program="scraper")
        deferred = await run.wait_reply()
        first = await run.wait_reply(kind="followup")
        second = await run.wait_reply(kind="followup", index=1)
    assert deferred.type == 5
    assert first.content == "last lines of scraper"
    assert second.message is not None
    assert second.message["flags"] & 64
    # The first follow-up replaced the "thinking" message; the ephemeral one is private.
    assert [m["content"] for m in fake_discord.bot_messages("general")] == ["last lines of scraper"]
    assert [a.kind for a in fake_discord.bot_actions("general")] == ["create", "edit"]


async def test_unknown_command_is_a_lookup_error(fake_discord: FakeDiscord) -> None:
    gina = fake_discord.add_user("gina")
    async with run_client(Bot(fake_discord.guild_id), fake_discord.token):
        with pytest.raises(LookupError, match="nope"):
            fake_discord.invoke(gina, "ops", "nope")


async def test_late_callback_is_unknown_interaction(fake_discord: FakeDiscord) -> None:
    hugo = fake_discord.add_user("hugo")
    async with run_client(Bot(fake_discord.guild_id), fake_discord.token):
        fake_discord.interactions.deadline_seconds = 0.0  # every answer is too late
        run = fake_discord.invoke(hugo, "ops", "status", program="ingest")
        codes = await fake_discord.wait_until(lambda: run.refused)
    assert codes == [10062]
    assert run.replies == []
    assert fake_discord.bot_actions() == []
