"""The fake's gateway under load and mid-session controls, met by unmodified discord.py."""

from __future__ import annotations

import discord

from tests._wait import wait_until
from tests.discord_fake import FakeDiscord, run_client
from tests.discord_fake.harness import RecordingClient
from tests.discord_fake.pytest_plugin import fake_discord

__all__ = ["fake_discord"]

FLOOD = 1500  # more than the replay window (1000) and the old send queue (1000)


class NoIdentifyDelay(RecordingClient):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before a non-initial IDENTIFY; a public hook, overridden."""


def contents(client: RecordingClient) -> list[str]:
    return [v.content for n, v in client.seen if n == "message" and isinstance(v, discord.Message)]


async def test_gateway_live_flood_reaches_the_bot_in_order(fake_discord: FakeDiscord) -> None:
    """Regression (audit 1): past 1000 queued events the connection went silent."""
    flooder = fake_discord.add_user("flooder")
    async with run_client(RecordingClient(), fake_discord.token) as client:
        for i in range(FLOOD):
            fake_discord.post_message(flooder, "general", f"m{i}")
        await client.wait_seen("message", count=FLOOD, timeout_seconds=30)
        fake_discord.post_message(flooder, "general", "after")
        await client.wait_seen("message", count=FLOOD + 1)
    assert contents(client) == [f"m{i}" for i in range(FLOOD)] + ["after"]
    assert (fake_discord.identify_count, fake_discord.resume_count) == (1, 0)


async def test_gateway_outage_flood_is_replayed_then_resumed(fake_discord: FakeDiscord) -> None:
    """Regression (audit 1): ~1000 missed events lost RESUMED and wedged the session."""
    flooder = fake_discord.add_user("flooder")
    async with run_client(RecordingClient(), fake_discord.token) as client:
        async with fake_discord.gateway_outage():
            for i in range(FLOOD):
                fake_discord.post_message(flooder, "general", f"m{i}")
        await client.wait_seen("resumed", timeout_seconds=30)
        await client.wait_seen("message", count=FLOOD)
    assert contents(client) == [f"m{i}" for i in range(FLOOD)]
    assert (fake_discord.identify_count, fake_discord.resume_count) == (1, 1)
    names = [n for n, _ in client.seen]
    assert names.index("resumed") == len(names) - 1  # RESUMED after the replay


async def test_gateway_client_too_far_behind_gets_a_new_session(fake_discord: FakeDiscord) -> None:
    fake_discord.gateway.backlog_limit = 50
    flooder = fake_discord.add_user("flooder")
    async with run_client(NoIdentifyDelay(), fake_discord.token) as client:
        for i in range(100):
            fake_discord.post_message(flooder, "general", f"m{i}")
        await client.wait_seen("ready", count=2)
        fake_discord.post_message(flooder, "general", "after")
        await client.wait_seen("message")
    # Closed with 4000 at once: the RESUME was refused (events were gone), then IDENTIFY.
    assert contents(client) == ["after"]
    assert (fake_discord.identify_count, fake_discord.gateway.refused_resume_count) == (2, 1)


async def test_gateway_reconnect_request_is_resumed(fake_discord: FakeDiscord) -> None:
    poster = fake_discord.add_user("poster")
    async with run_client(RecordingClient(), fake_discord.token) as client:
        assert fake_discord.request_reconnect() == 1
        await client.wait_seen("resumed")
        fake_discord.post_message(poster, "general", "still here")
        await client.wait_seen("message")
    assert contents(client) == ["still here"]
    assert (fake_discord.identify_count, fake_discord.resume_count) == (1, 1)


async def test_gateway_invalid_session_mid_session(fake_discord: FakeDiscord) -> None:
    async with run_client(NoIdentifyDelay(), fake_discord.token) as client:
        assert fake_discord.invalidate_session(resumable=True) == 1
        await client.wait_seen("resumed")
        assert fake_discord.invalidate_session(resumable=False) == 1
        await client.wait_seen("ready", count=2)
    assert (fake_discord.identify_count, fake_discord.resume_count) == (2, 1)
    assert fake_discord.gateway.refused_resume_count == 0


async def test_gateway_counts_the_live_connections(fake_discord: FakeDiscord) -> None:
    assert fake_discord.gateway.live_connections == 0
    async with run_client(RecordingClient(), fake_discord.token) as client:
        await client.wait_seen("ready")
        assert fake_discord.gateway.live_connections == 1
    # discord.py's close sends a close frame; the fake ends that connection.
    await wait_until(lambda: fake_discord.gateway.live_connections == 0, seconds=5)
