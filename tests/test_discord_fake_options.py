"""Slash command options typed, checked and resolved as Discord's client sends them."""

from __future__ import annotations

from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.discord_fake import FakeDiscord, intents_for_tests, run_client
from tests.discord_fake.__main__ import run_console_line
from tests.discord_fake.harness import GUILD_READY_TIMEOUT
from tests.discord_fake.options import OptionError
from tests.discord_fake.pytest_plugin import fake_discord

__all__ = ["fake_discord"]

Level = app_commands.Choice[int]
LEVELS = [app_commands.Choice(name="low", value=1), app_commands.Choice(name="high", value=2)]


class ProbeBot(commands.Bot):
    """Records what discord.py made of each option of ``/probe`` and ``/status``."""

    def __init__(self) -> None:
        super().__init__(
            command_prefix="!", intents=intents_for_tests(), guild_ready_timeout=GUILD_READY_TIMEOUT
        )
        self.got: dict[str, Any] = {}

    async def setup_hook(self) -> None:
        @self.tree.command()
        @app_commands.choices(level=LEVELS)
        async def probe(
            interaction: discord.Interaction,
            text: str,
            count: int,
            ratio: float,
            flag: bool,
            member: discord.Member,
            user: discord.User,
            channel: discord.TextChannel,
            role: discord.Role,
            level: Level,
            short: app_commands.Range[str, 1, 5] = "x",
            who: discord.Member | discord.Role | None = None,
        ) -> None:
            """Take one option of every type."""
            self.got = {
                "text": text,
                "count": count,
                "ratio": ratio,
                "flag": flag,
                "member": member,
                "user": user,
                "channel": channel,
                "role": role,
                "level": level.value,
                "short": short,
                "who": who,
            }
            await interaction.response.send_message("ok")

        @self.tree.command()
        async def status(interaction: discord.Interaction, program: str, lines: int = 10) -> None:
            """Show a program's status."""
            await interaction.response.send_message(f"{program!r} {lines!r}")

        await self.tree.sync()


async def test_options_are_typed_and_resolved(fake_discord: FakeDiscord) -> None:
    """Regression (audit 4): values were sent as given and without ``resolved``."""
    alice = fake_discord.add_user("alice", roles=("operator",))
    bot = ProbeBot()
    async with run_client(bot, fake_discord.token):
        run = fake_discord.invoke(
            alice,
            "general",
            "probe",
            text="hello",
            count="3",
            ratio=0.5,
            flag="true",
            member="alice",
            user=alice,
            channel="ops",
            role="operator",
            level=2,
            who=alice.id,
        )
        reply = await run.wait_reply()
    assert reply.content == "ok"
    got = bot.got
    assert (got["text"], got["count"], got["ratio"], got["flag"]) == ("hello", 3, 0.5, True)
    assert isinstance(got["member"], discord.Member)
    assert [r.name for r in got["member"].roles] == ["@everyone", "operator"]
    assert isinstance(got["user"], discord.Member)
    assert got["user"].id == alice.id
    assert isinstance(got["channel"], discord.TextChannel)
    assert got["channel"].name == "ops"
    assert isinstance(got["role"], discord.Role)
    assert got["role"].name == "operator"
    assert got["level"] == 2
    assert isinstance(got["who"], discord.Member)
    sent = {o["name"]: o["value"] for o in run.payload["data"]["options"]}
    assert sent["count"] == 3
    assert sent["member"] == str(alice.id)


async def test_bad_invocations_are_refused_clearly(fake_discord: FakeDiscord) -> None:
    alice = fake_discord.add_user("alice", roles=("operator",))
    good: dict[str, Any] = {
        "text": "t",
        "count": 1,
        "ratio": 1.0,
        "flag": False,
        "member": alice,
        "user": alice,
        "channel": "general",
        "role": "operator",
        "level": 1,
    }
    bad_cases: list[tuple[dict[str, Any], str]] = [
        ({"text": None}, "required"),
        ({"level": 3}, "not one of the choices"),
        ({"count": "many"}, "expects an integer"),
        ({"text": 42}, "expects text"),
        ({"short": "too long"}, "characters long"),
        ({"member": "nobody"}, "no user 'nobody'"),
        ({"channel": "nowhere"}, "no channel 'nowhere'"),
        ({"flag": "maybe"}, "expects a boolean"),
    ]
    async with run_client(ProbeBot(), fake_discord.token):
        for change, message in bad_cases:
            options = {k: v for k, v in (good | change).items() if v is not None}
            with pytest.raises(OptionError, match=message):
                fake_discord.invoke(alice, "general", "probe", **options)
        with pytest.raises(LookupError, match="no option 'colour'"):
            fake_discord.invoke(alice, "general", "probe", colour="red", **good)
    assert fake_discord.interactions.by_id == {}  # nothing was dispatched


async def test_console_sends_option_values_by_their_registered_type(
    fake_discord: FakeDiscord,
) -> None:
    """Regression (audit 4): ``/status program=42`` sent the int 42 to a str option."""
    you = fake_discord.add_user("you", roles=("operator",))
    async with run_client(ProbeBot(), fake_discord.token):
        await run_console_line(fake_discord, you, "/status program=42 lines=7")
        (run,) = fake_discord.interactions.by_id.values()
        reply = await run.wait_reply()
    assert reply.content == "'42' 7"
