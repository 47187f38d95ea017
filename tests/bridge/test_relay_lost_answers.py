"""The real ``dsup run`` killed while Discord posts its messages but the answers are lost.

The outbox rows were sent, maybe more than once, but never marked sent: the next dsup
sends them again, and each must show once (the row's nonce, or its marker in history).
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from tests._wait import wait_until
from tests.bridge._bridge import dsup_process, node_config, stop_process, unsent_rows
from tests.bridge._relayed import program
from tests.bridge.test_relay_restart import MESSAGES, _relayed
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]


async def test_relay_sigkill_while_answers_are_lost_doubles_no_message(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    ticker = program("ticker", "relay_ticker.py", tmp_path / "runs", 20, relay="all")
    config = node_config(
        tmp_path, fake_discord, ticker, name="lossy", channels={"log_channel": "ops"}
    )
    # Exactly once across a SIGKILL, not the pace: no 5 s windows between the re-sends.
    fake_discord.set_rate_limit(*MESSAGES, limit=5, per_seconds=1.0)
    lost = fake_discord.lose_answers(*MESSAGES, times=None)
    async with dsup_process(config) as first:
        # Posted, its answer lost, tried again (the nonce hands back the first), lost again.
        await wait_until(lambda: lost.hits >= 3, seconds=20)
        await stop_process(first, signal.SIGKILL)
    posted = [str(m.get("content", "")) for m in fake_discord.bot_messages("ops")]
    unsent = unsent_rows(config)
    fake_discord.clear_faults()
    async with dsup_process(config) as second:
        await fake_discord.wait_until(lambda: _relayed(fake_discord, 2), timeout_seconds=20)
        assert await stop_process(second, signal.SIGTERM) == 0
    assert posted, "Discord took a message whose answer it never gave"
    assert posted[0].startswith(unsent[0] + "\u2063"), "the kill left the posted row unsent"
    contents = [str(m.get("content", "")) for m in fake_discord.bot_messages("ops")]
    assert len(contents) == len(set(contents)), "a message was posted twice"
    for row in unsent:
        assert sum(c.startswith(row) for c in contents) == 1, row
    shown = _relayed(fake_discord, 1)
    assert shown == sorted(set(shown))
    assert shown
