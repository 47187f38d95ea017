"""The bridge's health where the operator looks: ``dsup ctl status`` (and --json), the console."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import aiohttp
import anyio
import discord
import pytest

from supervisor.bridge.health import HealthRecord
from supervisor.commands.health import BridgeHealth, describe
from supervisor.control.render import render_status
from tests._control import ask, program, result
from tests._wait import wait_until
from tests.bridge._bridge import bridged_node
from tests.discord_fake import run_client
from tests.discord_fake.harness import RecordingClient
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

TICK = program("tick", "ctl_ticker.py", "0.2")


async def test_ctl_status_shows_the_bridge(
    tmp_path: Path, fake_discord: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with bridged_node(tmp_path, fake_discord, TICK) as bridged:
        report = result(await ask(bridged.node.socket, "status"))
    bridge = report["bridge"]
    assert isinstance(bridge, dict)
    assert (bridge["state"], bridge["user"], bridge["guild"]) == (
        "connected",
        "dsup-bot",
        "dsup-test",
    )
    text = render_status(report)
    assert "discord: connected as dsup-bot to dsup-test" in text.splitlines()[-1]
    assert "discord: connected as dsup-bot to dsup-test" in caplog.text  # dsup run's console


async def test_ctl_status_shows_a_problem_and_what_to_do(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    fake_discord.add_channel("secret", bot_denied=True)
    async with bridged_node(tmp_path, fake_discord, TICK, status_channel="secret") as bridged:
        await wait_until(lambda: bool(bridged.bridge.health.snapshot().problems))
        report = result(await ask(bridged.node.socket, "status"))
    lines = render_status(report).splitlines()
    assert lines[-1].startswith("discord: problem: cannot use the status channel")
    assert "invite the bot" in lines[-1]


def test_describe_a_reconnecting_bridge() -> None:
    now = time.time()
    health = BridgeHealth(
        state="reconnecting", since=now - 65, last_error="gateway closed", retry_at=now + 20
    )
    assert describe(health, now=now) == [
        "discord: reconnecting for 1m05s, next try in 20s: gateway closed"
    ]
    stopped = BridgeHealth(state="stopped", since=now, last_error="Discord rejected the token")
    assert describe(stopped, now=now) == ["discord: stopped: Discord rejected the token"]


async def test_health_tells_whether_discord_answers(fake_discord: FakeDiscord) -> None:
    """As dsup stops it waits for Discord only while Discord answers: the gateway is
    connected and the last request got an answer, other than a 5xx."""
    health = HealthRecord()
    trace = aiohttp.TraceConfig()
    health.watch_requests(trace)
    assert not health.is_reachable()  # not connected yet
    async with run_client(RecordingClient(http_trace=trace), fake_discord.token) as client:
        health.connected(user="dsup-bot", guild="dsup-test", latency=lambda: 0.0)
        channel = client.get_channel(fake_discord.channel("general").id)
        assert isinstance(channel, discord.TextChannel)
        await channel.send("answered")
        assert health.is_reachable()
        # discord.py retries a 502 after 1 s: unreachable until the retry is answered.
        fake_discord.fail_route("POST", "/channels/{channel_id}/messages", status=502)
        async with anyio.create_task_group() as tg:
            tg.start_soon(channel.send, "answered the second time")
            await wait_until(lambda: not health.is_reachable(), seconds=10)
        assert health.is_reachable()
        lost = fake_discord.lose_answers("POST", "/channels/{channel_id}/messages")
        with pytest.raises(aiohttp.ClientError):
            await channel.send("its answer lost")
        assert (lost.hits, health.is_reachable()) == (1, False)
        await channel.send("answered again")
        assert health.is_reachable()
        health.reconnecting("gateway connection lost")
        assert not health.is_reachable()


async def test_bridge_health_follows_the_answers_its_client_gets(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """The bridge makes its health follow its clients' requests itself: wired by the
    node alone, a bridge built otherwise took Discord answering 503 for reachable."""
    failing = fake_discord.fail_route(
        "POST", "/channels/{channel_id}/messages", status=503, times=None
    )
    async with bridged_node(tmp_path, fake_discord, TICK) as bridged:
        health = bridged.bridge.health
        await wait_until(lambda: not health.is_reachable(), seconds=10)
        assert failing.hits >= 1  # the board's first post
        assert health.snapshot().state == "connected"
        fake_discord.clear_faults()
        # discord.py tries the post again (1 s, then 3 s later...): answered, Discord
        # is reachable again.
        await wait_until(health.is_reachable, seconds=15)
