"""The messenger through the fake Discord: its detached reads under faults, and the wait
for the writes still in flight as dsup stops.

A read cut mid-request inside discord.py leaves the route's rate-limit bucket believing
it is exhausted (for up to 30 s every later request on the route waits): the messenger
lets a read run to its end in a task of its own while its caller stops waiting.
"""

from __future__ import annotations

import functools
import io
from typing import TYPE_CHECKING, Any

import anyio
import discord
import pytest

from supervisor.bridge.messenger import Delivery, Messenger, Requests
from tests._wait import wait_until
from tests.discord_fake import run_client
from tests.discord_fake.harness import RecordingClient
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

HISTORY = ("GET", "/channels/{channel_id}/messages")
NOT_STUCK_SECONDS = 10.0
"""A read that finds its route's bucket stuck waits 30 s (discord.py's longest wait
for a bucket that never said when it resets)."""


class _Client(RecordingClient):
    """A client that keeps its writes in flight, as the bridge's does."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.requests = Requests()


async def _read_cut_once(messenger: Messenger, channel_id: int, reached: Any) -> None:
    """Start a read of ``channel_id``'s history and cancel its caller once ``reached()``
    says the request is at the fake."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(messenger.recent, channel_id)
        await wait_until(reached, seconds=10)
        tg.cancel_scope.cancel("the caller stops waiting")


async def test_a_read_cut_by_its_caller_through_a_429_leaves_the_route_free(
    fake_discord: FakeDiscord,
) -> None:
    """The read meets a 429 and its caller is cancelled while discord.py sleeps before
    trying again: the read still goes again and ends, and the next read on the route
    is answered at once instead of waiting for a bucket left exhausted."""
    general = fake_discord.channel("general")
    fake_discord.post_message(fake_discord.add_user("carol"), general, "history to read")
    limited = fake_discord.fail_route(*HISTORY, status=429, retry_after=1.0)
    async with run_client(_Client(), fake_discord.token) as client:
        messenger = Messenger(client)
        await _read_cut_once(messenger, general.id, lambda: limited.hits == 1)
        with anyio.fail_after(NOT_STUCK_SECONDS):
            found = await messenger.recent(general.id)
        assert not isinstance(found, Delivery), found.error
        assert [f.content for f in found] == ["history to read"]
        # The cut read's retry, then the next read: both answered by the route.
        assert fake_discord.rate_limit_stats(general, HISTORY).requests == 2
        assert fake_discord.gateway.live_connections == 1
    await wait_until(lambda: fake_discord.gateway.live_connections == 0, seconds=5)


async def test_a_read_cut_by_its_caller_during_a_gateway_drop_leaves_the_route_free(
    fake_discord: FakeDiscord,
) -> None:
    """The gateway drops while a slow read is on its way and its caller is cancelled:
    the read ends, the next read on the route is answered while the gateway is still
    down, and the client resumes on one connection, gone once it is closed."""
    general = fake_discord.channel("general")
    slow = fake_discord.delay_route(*HISTORY, 1.0, times=1)
    async with run_client(_Client(), fake_discord.token) as client:
        messenger = Messenger(client)
        async with fake_discord.gateway_outage():
            await _read_cut_once(messenger, general.id, lambda: slow.hits == 1)
            with anyio.fail_after(NOT_STUCK_SECONDS):
                found = await messenger.recent(general.id)
            assert not isinstance(found, Delivery), found.error
            assert fake_discord.rate_limit_stats(general, HISTORY).requests == 2
        await client.wait_seen("resumed", timeout_seconds=10)
        assert fake_discord.gateway.live_connections == 1
    await wait_until(lambda: fake_discord.gateway.live_connections == 0, seconds=5)


async def test_answered_waits_for_the_writes_still_in_flight(fake_discord: FakeDiscord) -> None:
    """As dsup stops, a caller waits (bounded) for the client's posts still waiting for
    their answer: the answer names the message a post made."""
    general = fake_discord.channel("general")
    held = fake_discord.hold_answers("POST", "/channels/{channel_id}/messages")
    async with run_client(_Client(), fake_discord.token) as client:
        messenger = Messenger(client)
        assert await messenger.answered(0.0)  # nothing in flight
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(messenger.post, general.id, content="content held"))
            await wait_until(lambda: held.hits == 1, seconds=10)
            assert not await messenger.answered(0.2)
            held.release()
            with anyio.fail_after(10):
                assert await messenger.answered(None)
        (message,) = fake_discord.bot_messages(general)
        assert message["content"] == "content held"
    await wait_until(lambda: fake_discord.gateway.live_connections == 0, seconds=5)


@pytest.mark.parametrize("attached", [True, False], ids=["multipart", "json"])
async def test_a_post_answers_the_id_and_keeps_the_nonce_files_embeds_and_no_pings(
    fake_discord: FakeDiscord, attached: bool
) -> None:
    """A post without a view (built from discord.py's request, no ``Message`` made of the
    answer) keeps everything ``send`` gave: the nonce with ``enforce_nonce`` (a second post
    returns the first message), the reply, embeds and files, and pings nobody. Without
    files the body is the JSON's bytes: the text arrives as it was, zero-width characters
    (a row's marker) and all."""
    ops = fake_discord.channel("ops").id
    user = fake_discord.add_user("asker")
    asked = fake_discord.post_message(user, "ops", "hello")
    text = f"@everyone <@{user.id}> done \u00e9\u2063\u200b\u200c"
    async with run_client(_Client(), fake_discord.token) as client:
        messenger = Messenger(client)

        async def post() -> Delivery:
            files = [discord.File(io.BytesIO(b"out"), filename="out.txt")] if attached else []
            return await messenger.post(
                ops,
                content=text,
                embeds=[discord.Embed(description="the result")],
                files=files,
                nonce="row-1",
                reply_to=int(asked["id"]),
            )

        first, again = await post(), await post()
    (message,) = fake_discord.bot_messages("ops")
    assert first == again == Delivery(message_id=int(message["id"]))
    assert message["content"] == text
    assert message["nonce"] == "row-1"
    assert message["message_reference"]["message_id"] == asked["id"]
    assert message["embeds"][0]["description"] == "the result"
    assert [a["filename"] for a in message["attachments"]] == (["out.txt"] if attached else [])
    assert not message["mention_everyone"]
    assert message["mentions"] == []


async def test_a_post_retried_by_discord_py_after_a_5xx_sends_its_json_body_again(
    fake_discord: FakeDiscord,
) -> None:
    """discord.py retries a 502 itself with the same request: the JSON's bytes go again,
    whole, and one message is made."""
    failed = fake_discord.fail_route("POST", "/channels/{channel_id}/messages", status=502)
    text = "after a 502 \u2063\u200b"
    async with run_client(_Client(), fake_discord.token) as client:
        delivery = await Messenger(client).post(
            fake_discord.channel("ops").id, content=text, nonce="row-2"
        )
    (message,) = fake_discord.bot_messages("ops")
    assert (failed.hits, delivery) == (1, Delivery(message_id=int(message["id"])))
    assert (message["content"], message["nonce"]) == (text, "row-2")


async def test_requests_are_answered_once_none_is_in_flight_each_time() -> None:
    """A stopping caller's wait returns once every request in flight ended (not at the
    first), and the same again when requests are in flight later."""
    requests = Requests()
    first, second = anyio.CancelScope(), anyio.CancelScope()
    with anyio.fail_after(5):
        await requests.wait()  # none in flight
    for _ in range(2):
        requests.add(first)
        requests.add(second)
        waited = anyio.Event()

        async def wait(done: anyio.Event) -> None:
            await requests.wait()
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait, waited)
            await anyio.wait_all_tasks_blocked()
            requests.discard(first)
            await anyio.wait_all_tasks_blocked()
            assert (requests.is_answered, waited.is_set()) == (False, False)
            requests.discard(second)
            with anyio.fail_after(5):
                await waited.wait()
        assert requests.is_answered
