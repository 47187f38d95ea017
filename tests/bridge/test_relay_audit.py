"""The audit channel through the fake Discord: commands from Discord and ctl, refusals."""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisor.commands.access import AccessLevel, Actor
from tests.bridge._members import final_answer, members
from tests.bridge._relayed import program, relayed_node
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]


async def test_audit_channel_gets_commands_of_discord_and_ctl_in_batches(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    fake_discord.add_channel("audit")
    say = program("say", "relay_say.py", "hello")
    channels = {"log_channel": "ops", "audit_channel": "audit"}
    async with relayed_node(
        tmp_path, fake_discord, say, channels=channels, access=team.access, interval=5.0
    ) as node:
        refused = fake_discord.invoke(team.viewer, "general", "stop", name="say")
        done = fake_discord.invoke(team.operator, "general", "restart", name="say")
        looked = fake_discord.invoke(team.viewer, "general", "status")
        for call in (refused, done, looked):
            await final_answer(call)
        alice = Actor(name="alice", source="local", level=AccessLevel.OPERATOR)
        await node.service.stop(alice, "say")
        await fake_discord.wait_for_action(
            "audit", kind="create", predicate=lambda a: "`stop say` ok" in (a.content or "")
        )
    messages = [str(m.get("content", "")) for m in fake_discord.bot_messages("audit")]
    lines = [line for text in messages for line in text.splitlines()]
    assert any("vera" in line and "`stop say` refused" in line for line in lines), lines
    assert any("otto" in line and "(discord) `restart say` ok" in line for line in lines), lines
    assert any("`alice` (local) `stop say` ok" in line for line in lines), lines
    assert not any("status" in line for line in lines), "a look that succeeded is left out"
    assert len(messages) < len(lines), "rows that come together share a message"
    assert all(m["mentions"] == [] for m in fake_discord.bot_messages("audit"))
    assert fake_discord.bot_messages("ops") == []
