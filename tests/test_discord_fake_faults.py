"""Fault injection and rate limits on the fake, met by unmodified discord.py."""

from __future__ import annotations

import anyio
import discord
import pytest
from discord.ext import commands

from tests._wait import wait_until
from tests.discord_fake import FakeDiscord, intents_for_tests, run_client
from tests.discord_fake.harness import GUILD_READY_TIMEOUT, RecordingClient
from tests.discord_fake.pytest_plugin import fake_discord
from tests.discord_fake.ratelimit import ATTACHMENT_ROUTE, MESSAGES_ROUTE

__all__ = ["fake_discord"]

METHOD, MESSAGES = MESSAGES_ROUTE
EDIT = "/channels/{channel_id}/messages/{message_id}"


def text_channel(client: discord.Client, fake: FakeDiscord, name: str) -> discord.TextChannel:
    channel = client.get_channel(fake.channel(name).id)
    assert isinstance(channel, discord.TextChannel)
    return channel


async def test_reconnect_resumes_and_replays_missed_events(fake_discord: FakeDiscord) -> None:
    hana = fake_discord.add_user("hana")
    async with run_client(RecordingClient(), fake_discord.token) as client:
        async with fake_discord.gateway_outage():
            fake_discord.post_message(hana, "general", "sent while the bot was away")
        await client.wait_seen("resumed")
        (missed,) = await client.wait_seen("message")
        sent = await text_channel(client, fake_discord, "general").send("back")
    assert isinstance(missed, discord.Message)
    assert missed.content == "sent while the bot was away"
    assert (fake_discord.identify_count, fake_discord.resume_count) == (1, 1)
    assert sent.content == "back"


class NoIdentifyDelay(RecordingClient):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before a non-initial IDENTIFY; a public hook, overridden."""


async def test_a_replayed_message_reaches_the_bot_again_with_the_resume(
    fake_discord: FakeDiscord,
) -> None:
    """Discord's gateway delivers at least once: a message the bot handled comes again."""
    hana = fake_discord.add_user("hana")
    async with run_client(RecordingClient(), fake_discord.token) as client:
        posted = fake_discord.post_message(hana, "general", "restart web", mention_bot=True)
        await client.wait_seen("message")
        async with fake_discord.gateway_outage():
            fake_discord.replay_message("general", int(posted["id"]))
        await client.wait_seen("resumed")
        first, again = await client.wait_seen("message", count=2)
    assert isinstance(first, discord.Message)
    assert isinstance(again, discord.Message)
    assert again.id == first.id == int(posted["id"])
    assert again.content == first.content == posted["content"]
    assert client.user in again.mentions
    assert (fake_discord.identify_count, fake_discord.resume_count) == (1, 1)
    assert len(fake_discord.messages("general")) == 1


async def test_refused_resume_starts_a_new_session(fake_discord: FakeDiscord) -> None:
    ivan = fake_discord.add_user("ivan")
    async with run_client(NoIdentifyDelay(), fake_discord.token) as client:
        fake_discord.refuse_resume = True
        await fake_discord.drop_gateway()
        await client.wait_seen("ready", count=2)
        fake_discord.post_message(ivan, "general", "after the new session")
        (message,) = await client.wait_seen("message")
    assert isinstance(message, discord.Message)
    assert message.content == "after the new session"
    assert (fake_discord.identify_count, fake_discord.resume_count) == (2, 0)
    assert fake_discord.gateway.refused_resume_count == 1


async def test_a_refused_resume_loses_the_events_of_the_gap(fake_discord: FakeDiscord) -> None:
    """As on Discord: a new session starts from now; what was posted meanwhile is only
    in the channel's history. discord.py fires on_connect and on_ready again, never
    on_resumed."""
    ivan = fake_discord.add_user("ivan")
    async with run_client(NoIdentifyDelay(), fake_discord.token) as client:
        fake_discord.refuse_resume = True
        async with fake_discord.gateway_outage():
            gap = fake_discord.post_message(ivan, "general", "posted in the gap")
        await client.wait_seen("ready", count=2)
        fake_discord.post_message(ivan, "general", "after the new session")
        (message,) = await client.wait_seen("message")
        history = [m async for m in text_channel(client, fake_discord, "general").history()]
    assert isinstance(message, discord.Message)
    assert message.content == "after the new session"
    assert [v for n, v in client.seen if n == "message"] == [message]
    assert int(gap["id"]) in {m.id for m in history}
    names = [n for n, _ in client.seen]
    assert (names.count("connect"), names.count("ready"), names.count("resumed")) == (2, 2, 0)
    assert (fake_discord.identify_count, fake_discord.resume_count) == (2, 0)


async def test_429_is_honoured_by_discord_py_rate_limiter(fake_discord: FakeDiscord) -> None:
    # With honest headers discord.py waits ahead of time; hide them to meet the 429.
    fake_discord.send_ratelimit_headers = False
    fake_discord.set_rate_limit(METHOD, MESSAGES, limit=2, per_seconds=0.3)
    async with run_client(RecordingClient(), fake_discord.token) as client:
        channel = text_channel(client, fake_discord, "ops")
        for i in range(3):
            await channel.send(f"n{i}")
    stats = fake_discord.rate_limit_stats("ops")
    assert (stats.requests, stats.rejected, stats.max_in_window) == (4, 1, 2)
    assert [m["content"] for m in fake_discord.bot_messages("ops")] == ["n0", "n1", "n2"]


async def test_honest_headers_keep_discord_py_under_the_limit(fake_discord: FakeDiscord) -> None:
    fake_discord.set_rate_limit(METHOD, MESSAGES, limit=2, per_seconds=0.25)
    async with run_client(RecordingClient(), fake_discord.token) as client:
        channel = text_channel(client, fake_discord, "ops")
        started = anyio.current_time()
        for i in range(5):
            await channel.send(f"n{i}")
        elapsed = anyio.current_time() - started
    stats = fake_discord.rate_limit_stats("ops")
    assert (stats.requests, stats.rejected, stats.max_in_window) == (5, 0, 2)
    assert elapsed >= 0.4  # two full windows were waited out, ahead of time
    fake_discord.assert_within_rate_limits()
    assert len(fake_discord.bot_messages("ops")) == 5


async def test_injected_429_and_502_are_retried(fake_discord: FakeDiscord) -> None:
    too_many = fake_discord.fail_route(METHOD, MESSAGES, status=429, retry_after=0.05)
    async with run_client(RecordingClient(), fake_discord.token) as client:
        channel = text_channel(client, fake_discord, "general")
        await channel.send("through a 429")
        bad_gateway = fake_discord.fail_route(METHOD, MESSAGES, status=502, times=1)
        await channel.send("through a 502")  # discord.py waits 1 s before retrying a 502
    assert (too_many.hits, bad_gateway.hits) == (1, 1)
    contents = [m["content"] for m in fake_discord.bot_messages("general")]
    assert contents == ["through a 429", "through a 502"]


async def test_persistent_5xx_surfaces_as_server_error(fake_discord: FakeDiscord) -> None:
    async with run_client(RecordingClient(), fake_discord.token) as client:
        channel = text_channel(client, fake_discord, "general")
        fake_discord.fail_route(METHOD, MESSAGES, status=503, for_seconds=30, times=None)
        with pytest.raises(discord.DiscordServerError):
            await channel.send("lost")
        fake_discord.clear_faults()
        await channel.send("kept")
    assert [m["content"] for m in fake_discord.bot_messages("general")] == ["kept"]


async def test_delayed_route_delays_the_answer(fake_discord: FakeDiscord) -> None:
    async with run_client(RecordingClient(), fake_discord.token) as client:
        channel = text_channel(client, fake_discord, "general")
        delay = fake_discord.delay_route(METHOD, MESSAGES, 0.3, times=1)
        started = anyio.current_time()
        await channel.send("slow")
        elapsed = anyio.current_time() - started
    assert delay.hits == 1
    assert elapsed >= 0.3


async def test_held_answer_comes_once_released(fake_discord: FakeDiscord) -> None:
    """The message is posted when the request arrives; discord.py hears of it on release."""
    async with run_client(RecordingClient(), fake_discord.token) as client:
        channel = text_channel(client, fake_discord, "general")
        held = fake_discord.hold_answers(METHOD, MESSAGES, times=1)
        sent: list[discord.Message] = []
        async with anyio.create_task_group() as tg:

            async def send() -> None:
                sent.append(await channel.send("slow to answer"))

            tg.start_soon(send)
            await fake_discord.wait_until(lambda: bool(fake_discord.bot_messages("general")))
            (posted,) = fake_discord.bot_messages("general")
            await anyio.wait_all_tasks_blocked()
            assert sent == []  # posted, and the bot has not heard of it
            held.release()
        await channel.send("answered at once")  # the fault held one answer only
    assert held.hits == 1
    assert [m.id for m in sent] == [int(posted["id"])]
    contents = [m["content"] for m in fake_discord.bot_messages("general")]
    assert contents == ["slow to answer", "answered at once"]


async def test_held_file_download_comes_once_released(fake_discord: FakeDiscord) -> None:
    """A fault on the CDN's route holds a message's file as discord.py downloads it."""
    ines = fake_discord.add_user("ines")
    async with run_client(RecordingClient(), fake_discord.token) as client:
        fake_discord.post_message(ines, "general", "a file", files=[("a.txt", b"slow bytes")])
        (received,) = await client.wait_seen("message")
        assert isinstance(received, discord.Message)
        held = fake_discord.hold_answers(*ATTACHMENT_ROUTE, times=1)
        read: list[bytes] = []
        async with anyio.create_task_group() as tg:

            async def download() -> None:
                read.append(await received.attachments[0].read())

            tg.start_soon(download)
            await wait_until(lambda: held.hits == 1)  # no event tells a request came
            await anyio.wait_all_tasks_blocked()
            assert read == []  # asked, and the bytes have not come
            held.release()
        again = await received.attachments[0].read()  # the fault held one answer only
    assert held.hits == 1
    assert read == [b"slow bytes"]
    assert again == b"slow bytes"


async def test_fault_ends_when_its_time_is_up(fake_discord: FakeDiscord) -> None:
    """A fault without a count limit stops at ``for_seconds``; discord.py's retries get in."""
    async with run_client(RecordingClient(), fake_discord.token) as client:
        channel = text_channel(client, fake_discord, "general")
        fault = fake_discord.fail_route(
            METHOD, MESSAGES, status=429, times=None, for_seconds=0.5, retry_after=0.2
        )
        started = anyio.current_time()
        await channel.send("after the outage")  # up to 5 tries, 0.2 s apart: >= 0.8 s
        elapsed = anyio.current_time() - started
    assert fault.hits >= 1
    assert elapsed >= 0.5
    assert [m["content"] for m in fake_discord.bot_messages("general")] == ["after the outage"]


CALLBACK = ("POST", "/interactions/{interaction_id}/{interaction_token}/callback")
FOLLOWUP = ("POST", "/webhooks/{webhook_id}/{webhook_token}")


class SlowBot(commands.Bot):
    def __init__(self) -> None:
        super().__init__(
            command_prefix="!", intents=intents_for_tests(), guild_ready_timeout=GUILD_READY_TIMEOUT
        )

    async def setup_hook(self) -> None:
        @self.tree.command()
        async def slow(interaction: discord.Interaction) -> None:
            """Defer, then follow up."""
            await interaction.response.defer(thinking=True)
            await interaction.followup.send("done")

        await self.tree.sync()


async def test_interaction_buckets_are_per_interaction_and_token(fake_discord: FakeDiscord) -> None:
    """Regression (audit 10): all callbacks, and all follow-ups, shared one bucket."""
    # Two per bucket: discord.py sleeps out a bucket it sees at 0 before it returns.
    for route in (CALLBACK, FOLLOWUP):
        fake_discord.set_rate_limit(*route, limit=2, per_seconds=30.0)
    ivy = fake_discord.add_user("ivy")
    async with run_client(SlowBot(), fake_discord.token):
        runs = [fake_discord.invoke(ivy, "general", "slow") for _ in range(3)]
        done = [await run.wait_reply(kind="followup") for run in runs]
    assert [d.content for d in done] == ["done"] * 3
    assert all(run.refused == [] for run in runs)
    fake_discord.assert_within_rate_limits()


async def test_rate_limit_violations_name_every_route_and_bucket(
    fake_discord: FakeDiscord,
) -> None:
    fake_discord.send_ratelimit_headers = False
    fake_discord.set_rate_limit(METHOD, MESSAGES, limit=1, per_seconds=0.2)
    fake_discord.set_rate_limit("PATCH", EDIT, limit=1, per_seconds=0.2)
    async with run_client(RecordingClient(), fake_discord.token) as client:
        channel = text_channel(client, fake_discord, "ops")
        first = await channel.send("a")
        await channel.send("b")
        await first.edit(content="a2")
        await first.edit(content="a3")
        fake_discord.assert_within_rate_limits("general")
    violations = fake_discord.rate_limit_violations()
    assert sorted((m, t) for m, t, _ in violations) == [("PATCH", EDIT), (METHOD, MESSAGES)]
    with pytest.raises(AssertionError, match="PATCH /channels/"):
        fake_discord.assert_within_rate_limits("ops")


async def test_injected_30046_reaches_discord_py_as_its_code(fake_discord: FakeDiscord) -> None:
    """Discord refuses too many edits of hour-old messages with 429 and code 30046."""
    async with run_client(RecordingClient(), fake_discord.token) as client:
        message = await text_channel(client, fake_discord, "general").send("board")
        fault = fake_discord.fail_route(
            "PATCH", EDIT, status=429, code=30046, times=None, retry_after=0.01
        )
        with pytest.raises(discord.HTTPException) as caught:
            await message.edit(content="again")
    assert (caught.value.status, caught.value.code) == (429, 30046)
    assert fault.hits == 5  # discord.py waits out retry_after, then gives up after 5 tries
    assert fake_discord.bot_messages("general")[0]["content"] == "board"


async def test_a_moderator_deletes_a_message(fake_discord: FakeDiscord) -> None:
    async with run_client(RecordingClient(), fake_discord.token) as client:
        message = await text_channel(client, fake_discord, "general").send("doomed")
        fake_discord.delete_message("general", message.id)
        assert await client.wait_seen("delete") == [message.id]
        with pytest.raises(discord.NotFound) as caught:
            await message.edit(content="still there?")
    assert caught.value.code == 10008
    assert fake_discord.bot_messages("general") == []
    with pytest.raises(LookupError):
        fake_discord.delete_message("general", message.id)
