"""The messenger through the fake Discord: the wait for the writes still in flight as
dsup stops."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio

from supervisor.bridge.messenger import Messenger, Requests
from tests._wait import wait_until
from tests.discord_fake import run_client
from tests.discord_fake.harness import RecordingClient
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]


class _Client(RecordingClient):
    """A client that keeps its writes in flight, as the bridge's does."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.requests = Requests()


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
