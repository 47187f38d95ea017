"""What the relay relies on in the fake, met by unmodified discord.py: pings decided by
``allowed_mentions``, and rate-limit headers seen through the public ``http_trace``."""

from __future__ import annotations

import aiohttp
import discord

from tests.discord_fake import FakeDiscord, run_client
from tests.discord_fake.harness import RecordingClient
from tests.discord_fake.pytest_plugin import fake_discord

__all__ = ["fake_discord"]


async def test_fake_pings_only_what_allowed_mentions_allow(fake_discord: FakeDiscord) -> None:
    alice = fake_discord.add_user("alice")
    text = f"@everyone look, <@{alice.id}> and `@here`"
    async with run_client(RecordingClient(), fake_discord.token) as client:
        channel = client.get_partial_messageable(fake_discord.channel("general").id)
        loud = await channel.send(text)
        quiet = await channel.send(text, allowed_mentions=discord.AllowedMentions.none())
        named = await channel.send(
            text, allowed_mentions=discord.AllowedMentions(everyone=False, users=[alice])
        )
    assert loud.mention_everyone
    assert [u.id for u in loud.mentions] == [alice.id]
    assert not quiet.mention_everyone
    assert quiet.mentions == []
    assert not named.mention_everyone
    assert [u.id for u in named.mentions] == [alice.id]
    stored = [a.message for a in fake_discord.bot_actions("general")]
    assert [m["mention_everyone"] for m in stored if m] == [True, False, False]


async def test_fake_rate_limit_headers_reach_an_http_trace(fake_discord: FakeDiscord) -> None:
    seen: list[tuple[str, int, str | None]] = []

    async def on_end(
        session: aiohttp.ClientSession, context: object, params: aiohttp.TraceRequestEndParams
    ) -> None:
        headers = params.response.headers
        seen.append((params.method, params.response.status, headers.get("X-RateLimit-Remaining")))

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_end)
    async with run_client(RecordingClient(http_trace=trace), fake_discord.token) as client:
        channel = client.get_partial_messageable(fake_discord.channel("general").id)
        await channel.send("one")
        await channel.send("two")
    posts = [s for s in seen if s[0] == "POST"]
    assert posts[-2:] == [("POST", 200, "4"), ("POST", 200, "3")]
