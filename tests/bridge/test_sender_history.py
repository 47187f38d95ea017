"""The sender past the nonce window when the channel's history cannot be read."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio

from supervisor.bridge.pacing import Breaker
from supervisor.bridge.sender import OutboxSender
from supervisor.state.ledger import Ledger
from supervisor.state.outbox import Outbox
from tests._wait import wait_until
from tests.discord_fake import run_client
from tests.discord_fake.harness import RecordingClient
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

HISTORY = ("GET", "/channels/{channel_id}/messages")


def _sent(ledger: Ledger, row_id: int) -> int | None:
    (row,) = ledger.read("SELECT status, message_id FROM outbox WHERE id = ?", (row_id,))
    return int(row["message_id"]) if row["status"] == "sent" else None


async def test_sender_posts_a_late_row_when_the_history_is_refused(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """A channel that takes posts but refuses the history (403): a row first tried long
    ago asked for the history, took the 403 for the channel refusing dsup, and the
    channel was paused for good (each retry asked the same look), nothing sent."""
    ops = fake_discord.channel("ops").id
    refused = fake_discord.fail_route(
        *HISTORY, status=403, code=50013, message="Missing Permissions", times=None
    )
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        outbox = Outbox(ledger)
        row_id = outbox.post(ops, "incident", "crashed: exit code 1", now=time.time())
        outbox.claim(now=time.time() - 600)  # tried ten minutes ago, Discord away since
        later = outbox.post(ops, "state", "RUNNING again", now=time.time())
        sender = OutboxSender(outbox, breaker=Breaker(threshold=1, first_pause=60.0))
        async with (
            run_client(RecordingClient(), fake_discord.token) as client,
            anyio.create_task_group() as tg,
        ):
            await tg.start(sender.run, lambda: client)
            await wait_until(lambda: sender.sent == 2, seconds=10)
            tg.cancel_scope.cancel()  # marks what Discord confirmed
        assert sender.paused() == []
        assert _sent(ledger, row_id) is not None
        assert _sent(ledger, later) is not None
    assert refused.hits >= 1, "the history was asked for"
    shown = [m["content"] for m in fake_discord.bot_messages("ops")]
    assert [c.split("\u2063")[0] for c in shown] == ["crashed: exit code 1", "RUNNING again"]


async def test_sender_pauses_a_hidden_channel_on_its_refused_history_alone(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """A channel hidden from the bot refuses the look too: paused on it, no post tried."""
    hidden = fake_discord.add_channel("hidden", bot_denied=True).id
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        outbox = Outbox(ledger)
        outbox.post(hidden, "incident", "crashed: exit code 1", now=time.time())
        outbox.claim(now=time.time() - 600)
        sender = OutboxSender(outbox, breaker=Breaker(threshold=1, first_pause=60.0))
        async with (
            run_client(RecordingClient(), fake_discord.token) as client,
            anyio.create_task_group() as tg,
        ):
            await tg.start(sender.run, lambda: client)
            await wait_until(lambda: bool(sender.paused()), seconds=10)
            tg.cancel_scope.cancel()
    assert fake_discord.rate_limit_stats("hidden", HISTORY).requests == 1
    assert fake_discord.rate_limit_stats("hidden").requests == 0, "no post tried"
