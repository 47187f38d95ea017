"""The fake's attachment limit per interaction and its count of command creations."""

from __future__ import annotations

import io

import anyio
import discord
import pytest
from discord import app_commands

from tests.discord_fake import FakeDiscord, intents_for_tests, run_client
from tests.discord_fake.harness import GUILD_READY_TIMEOUT
from tests.discord_fake.pytest_plugin import fake_discord

__all__ = ["fake_discord"]


class Uploader(discord.Client):
    """Answers /upload with a file of ``size`` bytes and notes the limit it was told."""

    def __init__(self, names: tuple[str, ...] = ("upload",)) -> None:
        super().__init__(intents=intents_for_tests(), guild_ready_timeout=GUILD_READY_TIMEOUT)
        self.tree = app_commands.CommandTree(self)
        self.names = names
        self.limits: list[int] = []
        self.errors: list[tuple[int, int]] = []
        self.answered = anyio.Event()

    async def setup_hook(self) -> None:
        for name in self.names:

            @self.tree.command(name=name, description="send a file")
            async def upload(interaction: discord.Interaction, size: int) -> None:
                self.limits.append(interaction.filesize_limit)
                await interaction.response.defer(thinking=True)
                data = discord.File(io.BytesIO(b"x" * size), "f.bin")
                try:
                    await interaction.followup.send("here", file=data)
                except discord.HTTPException as exc:
                    self.errors.append((exc.status, exc.code))
                    await interaction.followup.send("too big")
                self.answered.set()


async def test_a_file_over_the_interactions_limit_is_refused(fake_discord: FakeDiscord) -> None:
    ann = fake_discord.add_user("ann")
    bot = Uploader()
    async with run_client(bot, fake_discord.token):
        await bot.tree.sync()
        fake_discord.interactions.attachment_size_limit = 1000
        small = fake_discord.invoke(ann, "general", "upload", size=1000)
        assert (await small.wait_reply(kind="followup")).content == "here"
        big = fake_discord.invoke(ann, "general", "upload", size=1001)
        assert (await big.wait_reply(kind="followup")).content == "too big"
    assert bot.limits == [1000, 1000]
    assert bot.errors == [(413, 40005)]


@pytest.mark.parametrize("scope", ["guild", "global"])
async def test_command_overwrites_count_only_new_commands_as_creations(
    fake_discord: FakeDiscord, scope: str
) -> None:
    guild = discord.Object(id=fake_discord.guild_id) if scope == "guild" else None
    first = Uploader(("one", "two"))
    async with run_client(first, fake_discord.token):
        if guild is not None:
            first.tree.copy_global_to(guild=guild)
        await first.tree.sync(guild=guild)
        await first.tree.sync(guild=guild)  # the same again: nothing created
    second = Uploader(("two", "three"))
    async with run_client(second, fake_discord.token):
        if guild is not None:
            second.tree.copy_global_to(guild=guild)
        await second.tree.sync(guild=guild)
    assert fake_discord.command_overwrites == 3
    assert fake_discord.command_creations == ["one", "two", "three"]
