"""The bridge's connection through the fake: resumes, restarts with backoff, a rejected
token, only the configured guild, the token in nothing recorded, nothing off 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import anyio
import discord
import psutil
import pytest

from supervisor.bridge.board import Board
from supervisor.bridge.bridge import DiscordBridge
from supervisor.bridge.health import HealthRecord
from supervisor.config.schema import load_config
from tests._control import program, running_node, write_config
from tests._wait import eventually, wait_until
from tests.bridge._bridge import bridged_node, discord_table, token_file
from tests.discord_fake import open_fake_discord, use_discord_api
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from supervisor.bridge.client import BridgeClient
    from tests.bridge._bridge import Bridged
    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

pytestmark = pytest.mark.timeout(60)

TICK = program("tick", "ctl_ticker.py", "0.2")
# Shaped like a real bot token (three base64url parts), so redaction is put to the test.
REAL_LOOKING_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"


class _Sleeps:
    """The bridge's waits between attempts: recorded, and served at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await anyio.lowlevel.checkpoint()


async def _connected(bridged: Bridged, *, identifies: int, fake: FakeDiscord) -> None:
    health = bridged.bridge.health
    await wait_until(
        lambda: fake.identify_count >= identifies and health.snapshot().state == "connected",
        seconds=20,
    )


async def test_gateway_drop_resumes_the_session(tmp_path: Path, fake_discord: FakeDiscord) -> None:
    async with bridged_node(tmp_path, fake_discord, TICK) as bridged:
        await fake_discord.drop_gateway()
        await wait_until(lambda: fake_discord.resume_count == 1, seconds=20)
        await _connected(bridged, identifies=1, fake=fake_discord)
        assert bridged.bridge.attempts == 1  # the same client, resumed by discord.py
    assert fake_discord.identify_count == 1


async def test_refused_resume_identifies_again_in_the_same_client(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    sleeps = _Sleeps()
    fake_discord.refuse_resume = True
    async with bridged_node(tmp_path, fake_discord, TICK, sleep=sleeps) as bridged:
        await fake_discord.drop_gateway()
        await _connected(bridged, identifies=2, fake=fake_discord)
        assert bridged.bridge.attempts == 1
    assert sleeps.delays == [5.0]  # the wait before identifying again, as discord.py's


async def test_repeated_invalid_sessions_identify_ever_more_slowly(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """A gateway that keeps invalidating the session must not spend the bot's 1,000
    IDENTIFYs a day: each one in the last hour doubles the wait before the next."""
    sleeps = _Sleeps()
    async with bridged_node(tmp_path, fake_discord, TICK, sleep=sleeps) as bridged:
        for identifies in (2, 3, 4):
            assert fake_discord.invalidate_session() == 1
            await _connected(bridged, identifies=identifies, fake=fake_discord)
        assert bridged.bridge.attempts == 1
    assert sleeps.delays == [5.0, 10.0, 20.0]


async def test_refused_resume_during_a_command(tmp_path: Path, fake_discord: FakeDiscord) -> None:
    """The gateway drops after /status was deferred and its resume is refused: the answer
    still comes (over HTTP), and the bot identifies again, in the same client."""
    alice = fake_discord.add_user("alice", roles=("watchers",))
    role = fake_discord.store.role_named("watchers")
    async with bridged_node(tmp_path, fake_discord, TICK, viewer=[role.id]) as bridged:
        record = fake_discord.invoke(alice, "general", "status")
        await record.wait_reply(kind="callback", timeout_seconds=20)  # deferred
        fake_discord.refuse_resume = True
        await fake_discord.drop_gateway()
        reply = await record.wait_reply(kind="followup", timeout_seconds=20)
        assert "tick:0" in (reply.content or "")
        await _connected(bridged, identifies=2, fake=fake_discord)
        assert bridged.bridge.attempts == 1


async def test_a_closed_session_restarts_the_client_with_backoff(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """A close code discord.py does not resume from (4011) ends the client: a new one
    starts after 5 s, then 10 s after a second failure in a row."""
    sleeps = _Sleeps()
    async with bridged_node(tmp_path, fake_discord, TICK, sleep=sleeps) as bridged:
        for attempt in (2, 3):
            await fake_discord.drop_gateway(code=4011)
            await _connected(bridged, identifies=attempt, fake=fake_discord)
        assert bridged.bridge.attempts == 3
        assert "4011" in bridged.bridge.health.snapshot().last_error
    assert sleeps.delays == [5.0, 10.0]


async def test_a_failing_login_is_retried_with_backoff(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    sleeps = _Sleeps()
    fault = fake_discord.fail_route("GET", "/users/@me", status=403, times=3)
    async with bridged_node(tmp_path, fake_discord, TICK, sleep=sleeps) as bridged:
        assert bridged.bridge.attempts == 4
    assert fault.hits == 3
    assert sleeps.delays == [5.0, 10.0, 20.0]


async def test_rejected_token_stops_the_bridge_without_retry(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    sleeps = _Sleeps()
    secret = token_file(tmp_path, "not-the-token")
    path = write_config(tmp_path, TICK, discord_table(fake_discord, secret))
    config = load_config(path)
    assert config.discord is not None
    async with running_node(path) as node:
        bridge = DiscordBridge(
            config.discord, node="ctltest", ledger=node.ledger, sleep=sleeps, health=HealthRecord()
        )
        with anyio.fail_after(10):
            await bridge.run(node.service)  # returns: it gave up
        assert all(c.status().state.value != "FATAL" for c in node.fleet.processes())
    health = bridge.health.snapshot()
    assert health.state == "stopped"
    assert "rejected the bot token" in health.last_error
    assert str(secret) in health.last_error  # where to put a fresh one
    assert (bridge.attempts, sleeps.delays) == (1, [])


async def test_token_reset_while_running_stops_the_bridge(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """The token is reset in the portal while dsup runs: the resume is refused, the new
    IDENTIFY is closed with 4004, and the bridge stops for good (the fleet runs on)."""
    sleeps = _Sleeps()
    async with bridged_node(tmp_path, fake_discord, TICK, sleep=sleeps) as bridged:
        fake_discord.store.token = "reset-in-the-portal"
        await fake_discord.drop_gateway()
        health = bridged.bridge.health
        await wait_until(lambda: health.snapshot().state == "stopped", seconds=20)
        assert "4004" in health.snapshot().last_error
        assert bridged.bridge.attempts == 1
        assert all(c.status().state.is_alive for c in bridged.node.fleet.processes())
    assert sleeps.delays == [5.0]  # before identifying again; no retry after the 4004


async def test_other_guilds_and_direct_messages_are_ignored_and_audited(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """The fake serves one guild; a DM-like interaction has no guild id."""
    mallory = fake_discord.add_user("mallory", roles=("watchers",))
    role = fake_discord.store.role_named("watchers")
    async with bridged_node(tmp_path, fake_discord, TICK, viewer=[role.id]) as bridged:
        record = fake_discord.interactions.command(
            mallory, fake_discord.channel("general"), "status", {}
        )
        payload = dict(record.payload)
        payload.pop("guild_id", None)
        payload.pop("member", None)
        payload["user"] = mallory.payload()
        payload["context"] = 1
        fake_discord.gateway.dispatch("INTERACTION_CREATE", payload)

        async def audited() -> bool:
            rows = await anyio.to_thread.run_sync(lambda: bridged.node.ledger.audit_rows(5))
            return any("ignored" in r.detail for r in rows)

        await eventually(audited)
        rows = await anyio.to_thread.run_sync(lambda: bridged.node.ledger.audit_rows(5))
    (row,) = [r for r in rows if "ignored" in r.detail]
    assert (row.source, row.outcome) == ("discord", "refused")
    assert "mallory" in row.actor
    assert record.replies == []


@pytest.fixture
async def fake_with_real_looking_token() -> AsyncIterator[FakeDiscord]:
    async with (
        open_fake_discord(token=REAL_LOOKING_TOKEN) as fake,
        use_discord_api(fake.api_base, fake.token),
    ):
        yield fake


async def test_token_appears_in_nothing_recorded(
    tmp_path: Path, fake_with_real_looking_token: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    fake = fake_with_real_looking_token
    caplog.set_level(logging.DEBUG)
    alice = fake.add_user("alice", roles=("watchers",))
    role = fake.store.role_named("watchers")
    async with bridged_node(tmp_path, fake, TICK, viewer=[role.id]) as bridged:
        await fake.wait_until(lambda: fake.bot_messages("general"), timeout_seconds=20)
        reply = await fake.invoke(alice, "general", "status").wait_reply(
            kind="followup", timeout_seconds=20
        )
        await fake.drop_gateway(code=4011)  # a failure: its reason is logged and kept
        await wait_until(lambda: bridged.bridge.attempts == 2, seconds=20)
        health = bridged.bridge.health.snapshot()
    recorded = [caplog.text, repr(health), str(reply)]
    recorded += [repr(fake.messages(c)) for c in ("general", "ops")]
    recorded += [r.getMessage() for r in caplog.records]
    stored = [p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file()]
    token = REAL_LOOKING_TOKEN
    assert caplog.records  # debug logging was on: there was something to search
    assert not [text for text in recorded if token in text]
    assert not [blob for blob in stored if token.encode() in blob]


def _pending_ready() -> list[asyncio.Task[object]]:
    """discord.py's task that dispatches READY once the guilds have arrived."""
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_coro().__qualname__ == "ConnectionState._delay_ready"  # type: ignore[union-attr]
    ]


async def test_a_client_closed_before_ready_dispatches_nothing_after(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """Regression: READY's own task outlived a closed client, then failed on its lost loop."""
    async with bridged_node(tmp_path, fake_discord, TICK, wait_connected=False):
        await wait_until(lambda: bool(_pending_ready()), seconds=20)
    # The bridge's client is closed now; READY's task still waits out guild_ready_timeout.
    await wait_until(lambda: not _pending_ready(), seconds=10)


async def test_no_connection_leaves_localhost(tmp_path: Path, fake_discord: FakeDiscord) -> None:
    me = psutil.Process()
    seen: set[str] = set()

    def look() -> None:
        seen.update(c.raddr.ip for c in me.net_connections(kind="inet") if c.raddr)

    alice = fake_discord.add_user("alice", roles=("watchers",))
    role = fake_discord.store.role_named("watchers")
    async with bridged_node(tmp_path, fake_discord, TICK, viewer=[role.id]):
        look()
        await fake_discord.wait_until(lambda: fake_discord.bot_messages("general"))
        look()
        record = fake_discord.invoke(alice, "general", "status")
        await record.wait_reply(kind="followup", timeout_seconds=20)
        look()
        await fake_discord.drop_gateway()
        await wait_until(lambda: fake_discord.resume_count == 1, seconds=20)
        look()
    assert seen  # the bridge had connections open: there was something to look at
    assert seen <= {"127.0.0.1"}
    assert fake_discord.api_base == discord.http.Route.BASE


class _BrokenOnce(Board):
    """A board whose first serve fails as a bug would."""

    failed = False

    async def serve(self, client: BridgeClient) -> None:
        if not _BrokenOnce.failed:
            _BrokenOnce.failed = True
            await client.wait_until_ready()
            raise RuntimeError("a bug in the board")
        await super().serve(client)


async def test_a_failing_bridge_task_restarts_the_bridge_not_the_node(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    sleeps = _Sleeps()
    async with bridged_node(
        tmp_path, fake_discord, TICK, sleep=sleeps, board=_BrokenOnce, wait_connected=False
    ) as bridged:
        await fake_discord.wait_until(
            lambda: fake_discord.bot_messages("general"), timeout_seconds=20
        )
        assert bridged.bridge.attempts == 2
        assert "a bug in the board" in bridged.bridge.health.snapshot().last_error
        assert all(c.status().state.is_alive for c in bridged.node.fleet.processes())
    assert sleeps.delays == [5.0]


async def test_bridge_dispatches_none_of_its_own_messages(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """The gateway echoes every message dsup posts (a relayed flood: one a second), and
    each was dispatched as an event, a task for a handler that drops it. A member's
    message still comes."""
    member = fake_discord.add_user("member")
    async with bridged_node(tmp_path, fake_discord, TICK) as bridged:
        client = bridged.bridge.client
        assert client is not None
        seen: list[discord.Message] = []

        async def first_message() -> None:
            seen.append(await client.wait_for("message", timeout=10))

        async with anyio.create_task_group() as tg:
            tg.start_soon(first_message)
            await anyio.wait_all_tasks_blocked()
            ops = client.get_partial_messageable(fake_discord.channel("general").id)
            await ops.send("posted by dsup")
            fake_discord.post_message(member, "general", "posted by a member")
    assert [m.author.id for m in seen] == [member.id]
