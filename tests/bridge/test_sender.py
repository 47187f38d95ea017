"""The outbox's sender through the fake: nonces, markers past the nonce window, mentions."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import anyio

from supervisor.bridge.sender import OutboxSender
from supervisor.state.ledger import Ledger
from supervisor.state.outbox import Outbox
from tests._wait import wait_until
from tests.discord_fake import run_client
from tests.discord_fake.harness import RecordingClient
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    import pytest

    from supervisor.state.outbox import Claim
    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

EDITS = "/channels/{channel_id}/messages/{message_id}"


@contextlib.asynccontextmanager
async def _sending(
    ledger: Ledger, fake_discord: FakeDiscord, **options: Any
) -> AsyncIterator[tuple[Outbox, OutboxSender]]:
    """A sender on ``ledger``'s outbox running on a ready client (its safety poll far
    away unless ``options`` say), stopped as the block ends (marking what Discord
    confirmed)."""
    outbox = Outbox(ledger)
    sender = OutboxSender(outbox, **{"poll_seconds": 60.0, **options})
    async with (
        run_client(RecordingClient(), fake_discord.token) as client,
        anyio.create_task_group() as tg,
    ):
        await tg.start(sender.run, lambda: client)
        await wait_until(client.is_ready)
        yield outbox, sender
        tg.cancel_scope.cancel()


def _edit(outbox: Outbox, target: int, text: str) -> int:
    return outbox.edit(target, text, now=time.time())


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
                await wait_until(lambda: sender.sent == 1)
                tg.cancel_scope.cancel()  # marks what Discord confirmed
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
                await wait_until(lambda: sender.sent == 1)
                tg.cancel_scope.cancel()  # marks what Discord confirmed
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
            await wait_until(lambda: sender.sent == 3)
            rows.append(
                await anyio.to_thread.run_sync(
                    lambda: outbox.post(ops, "notice", "change 3", now=time.time())
                )
            )
            await wait_until(lambda: sender.sent == 4)
            tg.cancel_scope.cancel()
        assert all(_sent(ledger, r) for r in rows)
    shown = [m["content"] for m in fake_discord.bot_messages("ops")]
    assert [c[: len("change 0")] for c in shown] == [f"change {n}" for n in range(4)]
    fake_discord.assert_within_rate_limits("ops")


async def test_sender_sends_what_a_writer_claimed_once_in_order(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """Rows a writer claims in its own trip (as the relay does) go once each, in the order
    written, with the rows another writer wrote meanwhile, and none waits for a poll;
    each message is marked sent by the next claim (the last as the sender stops)."""
    ops = fake_discord.channel("ops").id
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        outbox = Outbox(ledger)
        sender = OutboxSender(outbox, poll_seconds=60.0)
        written: list[int] = []

        def write(text: str, claim: Callable[[], Claim] | None) -> Claim | None:
            written.append(outbox.post(ops, "notice", text, now=time.time()))
            written.append(outbox.post(ops, "notice", f"{text}, by another", now=time.time()))
            return claim() if claim is not None else None

        async with (
            run_client(RecordingClient(), fake_discord.token) as client,
            anyio.create_task_group() as tg,
        ):
            await tg.start(sender.run, lambda: client)
            await wait_until(client.is_ready)
            for n in range(4):
                claim = sender.begin_claim()
                claimed = None
                try:
                    claimed = await anyio.to_thread.run_sync(write, f"change {n}", claim)
                finally:
                    sender.end_claim(claimed)
                await wait_until(lambda: sender.sent == len(written))
            tg.cancel_scope.cancel()
        assert all(_sent(ledger, r) for r in written)
        attempts = [r["attempts"] for r in ledger.read("SELECT attempts FROM outbox")]
        rows = [outbox.get(r) for r in written]
    expected = [f"change {n}{also}" for n in range(4) for also in ("", ", by another")]
    assert [row.content for row in rows if row is not None] == expected
    shown = [m["content"] for m in fake_discord.bot_messages("ops")]
    assert shown == [row.content + row.marker for row in rows if row is not None]
    assert attempts == [1] * 8


async def test_rows_a_lost_claim_took_are_sent_once_all_the_same(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """A writer's claim whose result never reaches the sender (the writer was cancelled
    after its trip) leaves its rows recorded as being sent: they are claimed again and
    sent, once."""
    ops = fake_discord.channel("ops").id
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        async with _sending(ledger, fake_discord) as (outbox, sender):
            claims: list[Callable[[], Claim]] = []

            def begun() -> bool:  # once the sender's own first look is over
                claim = sender.begin_claim()
                if claim is not None:
                    claims.append(claim)
                return claim is not None

            await wait_until(begun)
            (claim,) = claims
            row_id = outbox.post(ops, "incident", "crashed: exit code 1", now=time.time())
            (lost,) = (await anyio.to_thread.run_sync(claim)).rows
            assert lost.id == row_id
            sender.end_claim(None)
            await wait_until(lambda: sender.sent == 1)
        assert _sent(ledger, row_id) is not None
    (message,) = fake_discord.bot_messages("ops")
    assert message["content"].startswith("crashed: exit code 1")


async def test_a_row_written_while_its_channel_sends_goes_once_that_send_ends(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """A send that leaves rows in its channel looks again at once: a row written while
    the channel's answer was slow goes right after it, not at the next poll; and a send
    that leaves none lets the next write start its row (no look needed between)."""
    ops = fake_discord.channel("ops").id
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        async with _sending(ledger, fake_discord) as (outbox, sender):
            slow = fake_discord.hold_answers("POST", "/channels/{channel_id}/messages")
            first = outbox.post(ops, "notice", "first", now=time.time())
            await wait_until(lambda: len(fake_discord.bot_messages("ops")) == 1)
            behind = await anyio.to_thread.run_sync(
                lambda: outbox.post(ops, "notice", "behind it", now=time.time())
            )
            slow.release()
            await wait_until(lambda: sender.sent == 2)
            after = await anyio.to_thread.run_sync(
                lambda: outbox.post(ops, "notice", "after both", now=time.time())
            )
            await wait_until(lambda: sender.sent == 3)
        assert all(_sent(ledger, r) is not None for r in (first, behind, after))
    shown = [m["content"] for m in fake_discord.bot_messages("ops")]
    assert [c.partition("\u2063")[0] for c in shown] == ["first", "behind it", "after both"]


async def test_a_sender_that_stops_marks_what_discord_confirmed(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """A sender cancelled right after Discord confirmed a message (before any claim could
    mark it: the safety poll far away) marks it as it stops: a restart finds nothing to
    send again."""
    ops = fake_discord.channel("ops").id
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        async with _sending(ledger, fake_discord) as (outbox, sender):
            row_id = await anyio.to_thread.run_sync(
                lambda: outbox.post(ops, "notice", "alone", now=time.time())
            )
            await wait_until(lambda: sender.sent == 1)
        (message,) = fake_discord.bot_messages("ops")
        assert _sent(ledger, row_id) == int(message["id"])
        assert outbox.stats().pending == {}


async def test_a_sender_whose_client_goes_marks_what_discord_confirmed(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """No claim comes while the sender has no ready client: what Discord confirmed before
    it went is marked at the sender's next look, not left pending for the whole outage."""
    ops = fake_discord.channel("ops").id
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        outbox = Outbox(ledger)
        sender = OutboxSender(outbox, poll_seconds=0.5)
        live = True
        async with (
            run_client(RecordingClient(), fake_discord.token) as client,
            anyio.create_task_group() as tg,
        ):
            await tg.start(sender.run, lambda: client if live else None)
            await wait_until(client.is_ready)
            row_id = await anyio.to_thread.run_sync(
                lambda: outbox.post(ops, "notice", "alone", now=time.time())
            )
            await wait_until(lambda: sender.sent == 1)
            live = False
            await wait_until(lambda: _sent(ledger, row_id) is not None)
            tg.cancel_scope.cancel()
        (message,) = fake_discord.bot_messages("ops")
        assert _sent(ledger, row_id) == int(message["id"])


async def test_a_confirmed_message_is_marked_in_the_claim_of_the_safety_poll(
    tmp_path: Path, fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message a writer wrote and claimed in its trip (as the relay does), confirmed with
    nothing written after it (a burst's last), is marked sent in the claim the safety
    poll makes anyway, not in a worker-thread trip of its own: the sender goes to the
    ledger no more often than with nothing to send."""
    trips: list[str] = []  # the sender's worker-thread trips, once each is over
    run_sync = anyio.to_thread.run_sync

    async def counted(func: Callable[..., object], *args: object, **options: Any) -> object:
        result = await run_sync(func, *args, **options)
        name = getattr(func, "__qualname__", "")
        if name.startswith("OutboxSender."):
            trips.append(name)
        return result

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    ops = fake_discord.channel("ops").id
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        async with _sending(ledger, fake_discord, poll_seconds=0.5) as (outbox, sender):
            claims: list[Callable[[], Claim]] = []

            def begun() -> bool:  # no claim of the sender's own under way
                claim = sender.begin_claim()
                if claim is not None:
                    claims.append(claim)
                return claim is not None

            def write() -> tuple[int, Claim]:  # one trip: the row, then the claim
                return outbox.post(ops, "notice", "alone", now=time.time()), claims[0]()

            await wait_until(begun)
            claimed = None
            try:
                row_id, claimed = await run_sync(write)
            finally:
                sender.end_claim(claimed)
            await wait_until(lambda: _sent(ledger, row_id) is not None)
            assert sender.sent == 1
            assert set(trips) == {"OutboxSender._claim.<locals>.claim"}, trips
        (message,) = fake_discord.bot_messages("ops")
        assert _sent(ledger, row_id) == int(message["id"])


async def test_an_edit_written_while_an_edit_of_its_message_is_in_flight_is_shown(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """An incident edited again while Discord's answer to its last edit was slow: the newer
    text joined the row in flight and was marked sent with it, so the message kept the
    older text; it is sent after the answer comes."""
    ops = fake_discord.channel("ops").id
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        async with _sending(ledger, fake_discord) as (outbox, sender):
            created = outbox.post(ops, "incident", "crashed", now=time.time())
            await wait_until(lambda: sender.sent == 1)
            slow = fake_discord.hold_answers("PATCH", EDITS)
            await anyio.to_thread.run_sync(_edit, outbox, created, "crashed 2 times")
            await wait_until(lambda: slow.hits == 1)  # the edit is in flight
            for text in ("crashed 3 times", "recovered"):
                await anyio.to_thread.run_sync(_edit, outbox, created, text)
            slow.release()
            await wait_until(lambda: outbox.stats().pending == {})
        (message,) = fake_discord.bot_messages("ops")
    assert message["content"].partition("\u2063")[0] == "recovered"
    assert sender.sent == 3  # the create, the edit in flight, one for both edits after it
