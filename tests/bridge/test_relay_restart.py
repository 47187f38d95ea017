"""The relay across outages and restarts of the real ``dsup run``: every line once, in order.

dsup runs as a subprocess (so it can be stopped with SIGTERM or killed with SIGKILL)
against the fake Discord served by this test's event loop.
"""

from __future__ import annotations

import re
import signal
from typing import TYPE_CHECKING

import pytest

from tests._wait import wait_until
from tests.bridge._bridge import dsup_process, node_config, stop_process, unsent_rows
from tests.bridge._relayed import program
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

# The outage test takes about 20 s on an idle machine, most of it by design: a 10 s
# 5xx storm; the SIGTERM in the second outage stops dsup at once (Discord does not
# answer: its last sends are kept for the next start). Starting and stopping two real
# dsup processes adds to it under load.
pytestmark = pytest.mark.timeout(120)

MESSAGES = ("POST", "/channels/{channel_id}/messages")
_LINE = re.compile(r"run (\d+) line (\d+)")


def _config(tmp_path: Path, fake: FakeDiscord, programs: str) -> Path:
    return node_config(tmp_path, fake, programs, name="relayed", channels={"log_channel": "ops"})


def _relayed(fake: FakeDiscord, run: int) -> list[int]:
    """The numbers of the lines of ``run`` shown in ops, in message order."""
    found = []
    for message in fake.bot_messages("ops"):
        for match in _LINE.finditer(str(message.get("content", ""))):
            if int(match[1]) == run:
                found.append(int(match[2]))
    return found


async def test_relay_sigkill_with_unsent_rows_sends_them_after_restart_once(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    count = program("count", "relay_count.py", tmp_path / "runs", 400, relay="all")
    config = _config(tmp_path, fake_discord, count)
    # Exactly once across a SIGKILL, not the pace: 400 lines need not take 5 s windows.
    fake_discord.set_rate_limit(*MESSAGES, limit=5, per_seconds=1.0)
    fake_discord.fail_route(*MESSAGES, status=503, times=None)
    async with dsup_process(config) as first:
        await wait_until(lambda: len(unsent_rows(config)) >= 3, seconds=20)
        await stop_process(first, signal.SIGKILL)
    unsent = unsent_rows(config)
    fake_discord.clear_faults()
    async with dsup_process(config) as second:
        await fake_discord.wait_until(
            lambda: len(_relayed(fake_discord, 2)) >= 400, timeout_seconds=20
        )
        assert await stop_process(second, signal.SIGTERM) == 0
    contents = [str(m.get("content", "")) for m in fake_discord.bot_messages("ops")]
    for row in unsent:
        assert sum(c.startswith(row) for c in contents) == 1, row
    shown = _relayed(fake_discord, 1)
    assert shown == sorted(set(shown))
    assert len(shown) >= 100
    assert _relayed(fake_discord, 2) == list(range(400))


async def test_relay_outages_and_a_restart_lose_and_double_no_line(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    ticker = program("ticker", "relay_ticker.py", tmp_path / "runs", 20, relay="all")
    config = _config(tmp_path, fake_discord, ticker)
    async with dsup_process(config) as first:
        await fake_discord.wait_until(lambda: _relayed(fake_discord, 1), timeout_seconds=20)
        async with fake_discord.gateway_outage():
            storm = fake_discord.fail_route(*MESSAGES, status=502, times=None, for_seconds=10.0)
            await wait_until(lambda: len(unsent_rows(config)) >= 1, seconds=10)
        # The 5xx go on for their 10 s (the gateway is back meanwhile), then a burst of 429s.
        await wait_until(
            lambda: not storm.matches(*MESSAGES, fake_discord.limiter.clock()), seconds=15
        )
        assert storm.hits >= 2  # retried through the storm
        burst = fake_discord.fail_route(*MESSAGES, status=429, times=3, retry_after=0.3)
        before = len(_relayed(fake_discord, 1))
        await fake_discord.wait_until(
            lambda: len(_relayed(fake_discord, 1)) > before + 20, timeout_seconds=20
        )
        assert burst.hits == 3
        # The second outage: dsup is stopped in the middle of it.
        fake_discord.fail_route(*MESSAGES, status=500, times=None)
        await wait_until(lambda: len(unsent_rows(config)) >= 1, seconds=10)
        assert await stop_process(first, signal.SIGTERM) == 0
    printed = _printed(tmp_path, run=1)
    fake_discord.clear_faults()
    async with dsup_process(config) as second:
        await fake_discord.wait_until(
            lambda: len(_relayed(fake_discord, 1)) >= printed, timeout_seconds=20
        )
        assert await stop_process(second, signal.SIGTERM) == 0
    assert printed > 60
    assert _relayed(fake_discord, 1) == list(range(printed))
    fake_discord.assert_within_rate_limits("ops")


def _printed(tmp_path: Path, *, run: int) -> int:
    """How many lines ``run`` of the ticker wrote, from its log file."""
    (log,) = (tmp_path / "state").rglob("ticker-0.out.log")
    numbers = [int(m[2]) for m in _LINE.finditer(log.read_text()) if int(m[1]) == run]
    assert numbers == list(range(len(numbers)))
    return len(numbers)
