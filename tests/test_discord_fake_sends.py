"""Creates as an outbox sends them, met by unmodified discord.py: files, nonce, reply, buttons.

And a lost answer: the fake posts the message, then drops the connection unanswered.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import discord
import pytest

from tests.discord_fake import FakeDiscord, run_client
from tests.discord_fake.harness import RecordingClient
from tests.discord_fake.pytest_plugin import fake_discord
from tests.discord_fake.ratelimit import MESSAGES_ROUTE

if TYPE_CHECKING:
    import re

__all__ = ["fake_discord"]

METHOD, MESSAGES = MESSAGES_ROUTE


class Confirm(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"test:ok:(?P<n>\d+)"):
    """A button whose custom id is all it needs: clicks reach it on any client."""

    clicked = anyio.Event()

    def __init__(self, n: int) -> None:
        super().__init__(discord.ui.Button(label="ok", custom_id=f"test:ok:{n}"))
        self.n = n

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> Confirm:
        return cls(int(match["n"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"ok {self.n}", ephemeral=True)


class Sender(RecordingClient):
    async def setup_hook(self) -> None:
        self.add_dynamic_items(Confirm)


def _send(channel: discord.TextChannel, asked: int, nonce: str) -> Any:
    """A reply to ``asked`` that may fail, with a file, a button and ``nonce``."""
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(label="ok", custom_id="test:ok:7"))
    reference = discord.MessageReference(
        message_id=asked, channel_id=channel.id, fail_if_not_exists=False
    )
    return channel.send(
        "the answer",
        file=discord.File(io.BytesIO(b"line 1\nline 2\n"), filename="tail.txt"),
        nonce=nonce,
        reference=reference,
        view=view,
        allowed_mentions=discord.AllowedMentions.none(),
    )


async def test_multipart_create_keeps_nonce_reference_and_buttons(
    fake_discord: FakeDiscord,
) -> None:
    """A multipart body carries nonce and enforce_nonce in payload_json: the same create
    again returns the first message, with its file, its reply and its clickable button."""
    ivy = fake_discord.add_user("ivy")
    asked = fake_discord.post_message(ivy, "general", "tail web")
    async with run_client(Sender(), fake_discord.token) as client:
        channel = client.get_channel(fake_discord.channel("general").id)
        assert isinstance(channel, discord.TextChannel)
        first = await _send(channel, int(asked["id"]), "mention-1")
        again = await _send(channel, int(asked["id"]), "mention-1")
        click = fake_discord.click(ivy, first.id, "test:ok:7")
        answer = await click.wait_reply(timeout_seconds=10)
    assert again.id == first.id
    (posted,) = fake_discord.bot_messages("general")
    assert posted["nonce"] == "mention-1"
    assert posted["message_reference"]["message_id"] == asked["id"]
    (attachment,) = posted["attachments"]
    assert attachment["filename"] == "tail.txt"
    assert fake_discord.store.attachments[int(attachment["id"])] == b"line 1\nline 2\n"
    assert first.reference is not None
    assert first.reference.message_id == int(asked["id"])
    assert answer.content == "ok 7"
    assert posted["mentions"] == []


async def test_reply_to_a_deleted_message_that_may_fail_is_posted_plainly(
    fake_discord: FakeDiscord,
) -> None:
    ivy = fake_discord.add_user("ivy")
    asked = fake_discord.post_message(ivy, "general", "logs web")
    fake_discord.delete_message("general", int(asked["id"]))
    async with run_client(Sender(), fake_discord.token) as client:
        channel = client.get_channel(fake_discord.channel("general").id)
        assert isinstance(channel, discord.TextChannel)
        posted = await _send(channel, int(asked["id"]), "mention-2")
    assert posted.type is discord.MessageType.default
    assert [m["attachments"][0]["filename"] for m in fake_discord.bot_messages("general")] == [
        "tail.txt"
    ]


async def test_lost_answer_posts_the_message_and_the_same_nonce_finds_it(
    fake_discord: FakeDiscord,
) -> None:
    """The fake posts, then drops the connection: discord.py raises a client error, and a
    retry with the same nonce gets the first message instead of a second one."""
    ivy = fake_discord.add_user("ivy")
    asked = fake_discord.post_message(ivy, "general", "tail web")
    lost = fake_discord.lose_answers(METHOD, MESSAGES, times=1)
    async with run_client(Sender(), fake_discord.token) as client:
        channel = client.get_channel(fake_discord.channel("general").id)
        assert isinstance(channel, discord.TextChannel)
        with pytest.raises(aiohttp.ClientError):
            await _send(channel, int(asked["id"]), "mention-3")
        assert len(fake_discord.bot_messages("general")) == 1
        retried = await _send(channel, int(asked["id"]), "mention-3")
    assert lost.hits == 1
    (posted,) = fake_discord.bot_messages("general")
    assert retried.id == int(posted["id"])


async def test_reply_pings_its_asker_unless_allowed_mentions_says_otherwise(
    fake_discord: FakeDiscord,
) -> None:
    ivy = fake_discord.add_user("ivy")
    asked = fake_discord.post_message(ivy, "general", "status")
    async with run_client(RecordingClient(), fake_discord.token) as client:
        channel = client.get_channel(fake_discord.channel("general").id)
        assert isinstance(channel, discord.TextChannel)
        question = await channel.fetch_message(int(asked["id"]))
        await question.reply("loud")
        await question.reply("quiet", mention_author=False)
        await question.reply("silent", allowed_mentions=discord.AllowedMentions.none())
    loud, quiet, silent = fake_discord.bot_messages("general")
    assert [m["id"] for m in loud["mentions"]] == [str(ivy.id)]
    assert quiet["mentions"] == []
    assert silent["mentions"] == []
