"""Discord's message and embed limits, and unknown targets, met by unmodified discord.py."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import aiohttp
import discord

from tests.discord_fake import FakeDiscord, run_client
from tests.discord_fake.harness import RecordingClient
from tests.discord_fake.pytest_plugin import fake_discord
from tests.discord_fake.ratelimit import MESSAGES_ROUTE

if TYPE_CHECKING:
    from collections.abc import Awaitable

__all__ = ["fake_discord"]


def fields(count: int, *, name: str = "n", value: str = "v") -> discord.Embed:
    embed = discord.Embed()
    for _ in range(count):
        embed.add_field(name=name, value=value)
    return embed


# Each case: the embeds sent, and the field Discord names in its 400 answer.
OVER_THE_LIMIT: list[tuple[list[discord.Embed], str]] = [
    ([discord.Embed(title="t" * 257)], "embeds.0.title"),
    ([discord.Embed(description="d" * 4097)], "embeds.0.description"),
    ([discord.Embed().set_footer(text="f" * 2049)], "embeds.0.footer.text"),
    ([discord.Embed().set_author(name="a" * 257)], "embeds.0.author.name"),
    ([fields(26)], "embeds.0.fields"),
    ([fields(1, name="n" * 257)], "embeds.0.fields.0.name"),
    ([fields(1, value="v" * 1025)], "embeds.0.fields.0.value"),
    ([discord.Embed(description="d" * 4000), discord.Embed(description="d" * 2001)], "embeds"),
    # discord.py itself refuses 11 embeds; the fake's answer is checked with raw HTTP below.
]


def at_the_limit() -> discord.Embed:
    embed = discord.Embed(title="t" * 256, description="d" * 4096)
    embed.set_footer(text="f" * 1000).set_author(name="a" * 256)
    for _ in range(25):
        embed.add_field(name="n", value="v")
    return embed  # 5658 characters in all


async def test_every_embed_limit_answers_400(fake_discord: FakeDiscord) -> None:
    """Regression (audit 5): footer text and author name were not limited."""
    fake_discord.set_rate_limit(*MESSAGES_ROUTE, limit=50, per_seconds=1.0)
    answers = []
    async with run_client(RecordingClient(), fake_discord.token) as client:
        channel = client.get_channel(fake_discord.channel("general").id)
        assert isinstance(channel, discord.TextChannel)
        for embeds, _ in OVER_THE_LIMIT:
            try:
                await channel.send(embeds=embeds)
            except discord.HTTPException as exc:
                answers.append((exc.status, exc.code, exc.text.splitlines()[-1].partition(":")[0]))
            else:
                answers.append((200, 0, ""))
        accepted = await channel.send(embeds=[at_the_limit(), fields(1, name="n" * 256)])
    assert answers == [(400, 50035, f"In {where}") for _, where in OVER_THE_LIMIT]
    assert len(accepted.embeds) == 2
    assert [len(m["embeds"]) for m in fake_discord.bot_messages("general")] == [2]


async def refusal(request: Awaitable[object]) -> tuple[int, int]:
    """Await a discord.py call that must fail; return its HTTP status and Discord code."""
    try:
        await request
    except discord.HTTPException as exc:
        return exc.status, exc.code
    raise AssertionError("the fake accepted it")


async def test_message_limits_and_unknown_targets(fake_discord: FakeDiscord) -> None:
    secret = fake_discord.add_channel("secret", bot_denied=True)
    async with run_client(RecordingClient(), fake_discord.token) as client:
        general = client.get_channel(fake_discord.channel("general").id)
        assert isinstance(general, discord.TextChannel)
        hidden = client.get_partial_messageable(secret.id)
        nowhere = client.get_partial_messageable(123)
        outcomes = [
            await refusal(general.send("x" * 2001)),
            await refusal(general.send("")),
            await refusal(hidden.send("hi")),
            await refusal(nowhere.send("hi")),
            await refusal(general.fetch_message(123)),
        ]
        accepted = await general.send("x" * 2000)
    assert outcomes == [(400, 50035), (400, 50006), (403, 50001), (404, 10003), (404, 10008)]
    assert len(accepted.content) == 2000


async def test_eleven_embeds_answer_400(fake_discord: FakeDiscord) -> None:
    url = f"{fake_discord.api_base}/channels/{fake_discord.channel('general').id}/messages"
    body = {"embeds": [{"title": str(i)} for i in range(11)]}
    headers = {"Authorization": f"Bot {fake_discord.token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=headers) as r,
    ):
        status, answer = r.status, json.loads(await r.read())
    assert (status, answer["code"]) == (400, 50035)
    assert answer["errors"]["embeds"]["_errors"][0]["message"] == "Must be 10 or fewer in length."
