"""discord.Client against the fake: login, ready, messages, edits, reactions, files, history."""

from __future__ import annotations

import io

from tests.discord_fake import FakeDiscord, intents_for_tests, run_client
from tests.discord_fake.harness import GUILD_READY_TIMEOUT
from tests.discord_fake.pytest_plugin import anyio_backend, fake_discord

import discord  # after tests.discord_fake, which silences its audioop warning

__all__ = ["anyio_backend", "fake_discord"]


def make_client() -> discord.Client:
    return discord.Client(intents=intents_for_tests(), guild_ready_timeout=GUILD_READY_TIMEOUT)


async def test_client_logs_in_and_sees_the_guild(fake_discord: FakeDiscord) -> None:
    async with run_client(make_client(), fake_discord.token) as client:
        assert client.user is not None
        assert client.user.id == fake_discord.application_id
        guild = client.get_guild(fake_discord.guild_id)
        assert guild is not None
        assert {c.name for c in guild.text_channels} == {"general", "ops"}
    assert fake_discord.identify_count == 1
