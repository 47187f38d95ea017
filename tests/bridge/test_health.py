"""The bridge's health where the operator looks: ``dsup ctl status`` (and --json), the console."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from supervisor.commands.health import BridgeHealth, describe
from supervisor.control.render import render_status
from tests._control import ask, program, result
from tests._wait import wait_until
from tests.bridge._bridge import bridged_node
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

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
