"""The outbox's sender through the fake: nonces, markers past the nonce window, mentions."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio

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


def _sent(ledger: Ledger, row_id: int) -> int | None:
    (row,) = ledger.read("SELECT status, message_id FROM outbox WHERE id = ?", (row_id,))
    return int(row["message_id"]) if row["status"] == "sent" else None


async def test_sender_finds_a_message_posted_before_the_nonce_window_ran_out(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """A create whose answer was lost long ago is found by its marker, not posted again."""
    ops = fake_discord.channel("ops").id
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        outbox = Outbox(ledger)
        row_id = outbox.post(ops, "incident", "crashed: exit code 1", now=time.time())
        (row,) = outbox.claim(now=time.time() - 600).rows  # tried ten minutes ago
        sender = OutboxSender(outbox, nonce_window=60.0)
        async with run_client(RecordingClient(), fake_discord.token) as client:
            channel = client.get_partial_messageable(ops)
            earlier = await channel.send(row.content + row.marker, nonce="from-long-ago")
            async with anyio.create_task_group() as tg:
                await tg.start(sender.run, lambda: client)
                await wait_until(lambda: _sent(ledger, row_id) is not None)
                tg.cancel_scope.cancel()
        assert _sent(ledger, row_id) == earlier.id
    assert len(fake_discord.bot_messages("ops")) == 1


async def test_sender_retry_within_the_window_is_deduplicated_by_its_nonce(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """A create sent, its answer lost, sent again: Discord returns the first message."""
    ops = fake_discord.channel("ops").id
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        outbox = Outbox(ledger)
        row_id = outbox.post(ops, "state", "@everyone scraper:0 RUNNING", now=time.time())
        (row,) = outbox.claim(now=time.time()).rows
        sender = OutboxSender(outbox)
        async with run_client(RecordingClient(), fake_discord.token) as client:
            channel = client.get_partial_messageable(ops)
            first = await channel.send(row.content + row.marker, nonce=row.nonce)
            async with anyio.create_task_group() as tg:
                await tg.start(sender.run, lambda: client)
                await wait_until(lambda: _sent(ledger, row_id) is not None)
                tg.cancel_scope.cancel()
        assert _sent(ledger, row_id) == first.id
    (message,) = fake_discord.bot_messages("ops")
    assert message["content"] == row.content + row.marker


async def test_sender_looks_again_after_each_send_and_when_a_row_is_written(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """Rows of a channel go one after the other, and a new row (written in a worker
    thread, as the bridge writes them) at once: not at the next poll."""
    ops = fake_discord.channel("ops").id
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        outbox = Outbox(ledger)
        rows = [outbox.post(ops, "notice", f"change {n}", now=time.time()) for n in range(3)]
        sender = OutboxSender(outbox, poll_seconds=60.0)
        async with (
            run_client(RecordingClient(), fake_discord.token) as client,
            anyio.create_task_group() as tg,
        ):
            await tg.start(sender.run, lambda: client)
            await wait_until(lambda: all(_sent(ledger, r) for r in rows))
            rows.append(
                await anyio.to_thread.run_sync(
                    lambda: outbox.post(ops, "notice", "change 3", now=time.time())
                )
            )
            await wait_until(lambda: _sent(ledger, rows[-1]) is not None)
            tg.cancel_scope.cancel()
    shown = [m["content"] for m in fake_discord.bot_messages("ops")]
    assert [c[: len("change 0")] for c in shown] == [f"change {n}" for n in range(4)]
    fake_discord.assert_within_rate_limits("ops")
