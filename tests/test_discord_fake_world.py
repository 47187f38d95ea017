"""Roles, members and channels that change while the bot is connected, and visibility."""

from __future__ import annotations

import discord
import pytest

from tests.discord_fake import FakeDiscord, intents_for_tests, run_client
from tests.discord_fake.harness import RecordingClient
from tests.discord_fake.pytest_plugin import fake_discord

__all__ = ["fake_discord"]


def role_names(member: object) -> list[str]:
    assert isinstance(member, discord.Member)
    return [r.name for r in member.roles]


async def test_role_created_after_ready_is_on_the_message_author(
    fake_discord: FakeDiscord,
) -> None:
    """Regression (audit 3): a role made after READY was silently dropped by discord.py."""
    async with run_client(RecordingClient(), fake_discord.token) as client:
        late = fake_discord.add_user("late", roles=("admin",))
        fake_discord.post_message(late, "general", "hi")
        (message,) = await client.wait_seen("message")
        (role,) = await client.wait_seen("role_create")
    assert isinstance(message, discord.Message)
    assert role_names(message.author) == ["@everyone", "admin"]
    assert isinstance(role, discord.Role)
    assert role.id == fake_discord.store.role_named("admin").id
    assert [n for n, _ in client.seen][:2] == ["connect", "ready"]
    assert not [n for n, _ in client.seen if n == "member_join"]  # no GUILD_MEMBERS intent


def members_intents() -> discord.Intents:
    intents = intents_for_tests()
    intents.members = True
    return intents


async def test_member_join_and_role_change_reach_a_members_bot(fake_discord: FakeDiscord) -> None:
    async with run_client(RecordingClient(intents=members_intents()), fake_discord.token) as client:
        late = fake_discord.add_user("late", roles=("viewer",))
        (joined,) = await client.wait_seen("member_join")
        roles_on_join = role_names(joined)
        fake_discord.set_roles(late, ("viewer", "operator"))
        (updated,) = await client.wait_seen("member_update")
        guild = client.get_guild(fake_discord.guild_id)
        assert guild is not None
        cached = guild.get_member(late.id)
    assert roles_on_join == ["@everyone", "viewer"]
    assert role_names(updated) == ["@everyone", "viewer", "operator"]
    assert role_names(cached) == ["@everyone", "viewer", "operator"]


async def test_channel_added_after_ready_is_known_to_the_bot(fake_discord: FakeDiscord) -> None:
    async with run_client(RecordingClient(), fake_discord.token) as client:
        alerts = fake_discord.add_channel("alerts")
        (created,) = await client.wait_seen("channel_create")
        channel = client.get_channel(alerts.id)
        assert isinstance(channel, discord.TextChannel)
        await channel.send("up")
    assert isinstance(created, discord.TextChannel)
    assert created.name == "alerts"
    assert [m["content"] for m in fake_discord.bot_messages("alerts")] == ["up"]


async def test_deleted_channel_leaves_the_cache_and_answers_unknown_channel(
    fake_discord: FakeDiscord,
) -> None:
    alerts = fake_discord.add_channel("alerts")
    async with run_client(RecordingClient(), fake_discord.token) as client:
        assert isinstance(client.get_channel(alerts.id), discord.TextChannel)
        fake_discord.delete_channel("alerts")
        (deleted,) = await client.wait_seen("channel_delete")
        assert client.get_channel(alerts.id) is None
        with pytest.raises(discord.NotFound) as refused:
            await client.get_partial_messageable(alerts.id).send("anyone?")
    assert isinstance(deleted, discord.TextChannel)
    assert deleted.id == alerts.id
    assert (refused.value.status, refused.value.code) == (404, 10003)
    assert fake_discord.bot_messages("alerts") == []
    assert fake_discord.rate_limit_stats("alerts").requests == 1


async def test_events_in_a_hidden_channel_are_not_dispatched(fake_discord: FakeDiscord) -> None:
    """Regression (audit 11): the bot got messages from a channel it cannot view."""
    secret = fake_discord.add_channel("secret", bot_denied=True)
    poster = fake_discord.add_user("poster")
    async with run_client(RecordingClient(), fake_discord.token) as client:
        fake_discord.post_message(poster, secret, "you cannot see this")
        fake_discord.post_message(poster, "general", "but this")
        await client.wait_seen("message")
    contents = [v.content for n, v in client.seen if isinstance(v, discord.Message)]
    assert contents == ["but this"]


async def test_fetch_member_gives_the_roles_a_history_message_lacks(
    fake_discord: FakeDiscord,
) -> None:
    otto = fake_discord.add_user("otto", roles=("ops",))
    fake_discord.post_message(otto, "general", "before the bot came")
    async with run_client(RecordingClient(), fake_discord.token) as client:
        guild = client.get_guild(fake_discord.guild_id)
        assert guild is not None
        channel = client.get_channel(fake_discord.channel("general").id)
        assert isinstance(channel, discord.TextChannel)
        (old,) = [m async for m in channel.history(limit=10)]
        member = await guild.fetch_member(otto.id)
        with pytest.raises(discord.NotFound) as missing:
            await guild.fetch_member(12345)
    assert not isinstance(old.author, discord.Member)  # REST history carries no roles
    assert role_names(member) == ["@everyone", "ops"]
    assert missing.value.code == 10013


async def test_direct_message_reaches_the_bot_with_its_content_and_no_guild(
    fake_discord: FakeDiscord,
) -> None:
    """Discord sends a DM's content to a bot without MESSAGE_CONTENT; discord.py sees no guild."""
    ada = fake_discord.add_user("ada")
    async with run_client(
        RecordingClient(intents=discord.Intents.default()), fake_discord.token
    ) as client:
        fake_discord.post_direct_message(ada, "restart web")
        fake_discord.post_direct_message(ada, "and again")
        first, second = await client.wait_seen("message", count=2)
    assert isinstance(first, discord.Message)
    assert isinstance(second, discord.Message)
    assert first.guild is None
    assert isinstance(first.channel, discord.DMChannel)
    assert first.channel.id == second.channel.id  # one DM channel per user
    assert (first.author.id, first.content) == (ada.id, "restart web")


async def test_direct_message_needs_the_direct_messages_intent(fake_discord: FakeDiscord) -> None:
    ada = fake_discord.add_user("ada")
    intents = intents_for_tests()
    intents.dm_messages = False
    async with run_client(RecordingClient(intents=intents), fake_discord.token) as client:
        fake_discord.post_direct_message(ada, "not for you")
        fake_discord.post_message(ada, "general", "in the guild")  # events keep their order
        (message,) = await client.wait_seen("message")
    assert isinstance(message, discord.Message)
    assert message.content == "in the guild"
