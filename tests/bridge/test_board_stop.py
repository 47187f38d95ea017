"""The real ``dsup run`` stopped with SIGTERM: the board's farewell and the outbox's last
sends when Discord is slow to answer, and when it does not answer at all.

dsup runs as a subprocess against the fake Discord served by this test's event loop.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import anyio
import pytest

from supervisor.bridge.outbound import FINISH_SECONDS
from tests._control import program, write_config
from tests._wait import wait_until
from tests.bridge import _relayed
from tests.bridge._bridge import (
    STARTED_SECONDS,
    board_texts,
    discord_table,
    dsup_process,
    stop_process,
    token_file,
    unsent_rows,
)
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

pytestmark = pytest.mark.timeout(90)

MESSAGES = ("POST", "/channels/{channel_id}/messages")
TICK = program("tick", "ctl_ticker.py", "0.2")


def _config(tmp_path: Path, fake: FakeDiscord, programs: str = TICK, **channels: str) -> Path:
    table = discord_table(
        fake, token_file(tmp_path, fake.token), status_channel="general", channels=channels
    )
    return write_config(tmp_path, programs, table)


async def test_board_says_dsup_stopped_when_its_first_post_is_never_answered(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """Stopped before Discord answered the board's first post, dsup waited for that
    answer as long as it could and left the board it had posted saying RUNNING.
    Here the answer never comes: the farewell finds the board in the channel."""
    held = fake_discord.hold_answers(*MESSAGES)
    config = _config(tmp_path, fake_discord)
    async with dsup_process(config) as dsup:
        await fake_discord.wait_until(
            lambda: bool(fake_discord.bot_messages("general")), timeout_seconds=STARTED_SECONDS
        )
        assert await stop_process(dsup, signal.SIGTERM) == 0
    (text,) = board_texts(fake_discord)
    assert "dsup stopped <t:" in text
    assert held.hits == 1


async def test_board_of_a_post_answered_as_dsup_stops_says_dsup_stopped(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """The answer to the board's first post comes while dsup stops: its farewell is
    said on that board, the one board."""
    held = fake_discord.hold_answers(*MESSAGES)
    config = _config(tmp_path, fake_discord)
    async with dsup_process(config) as dsup:
        await fake_discord.wait_until(
            lambda: bool(fake_discord.bot_messages("general")), timeout_seconds=STARTED_SECONDS
        )
        dsup.send_signal(signal.SIGTERM)
        held.release()
        assert await stop_process(dsup, signal.SIGTERM) == 0
    (text,) = board_texts(fake_discord)
    assert "dsup stopped <t:" in text


async def test_sigterm_while_discord_does_not_answer_stops_at_once(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """In an outage (gateway down, sends answered 500) a SIGTERM held dsup for its whole
    bound (10 s: the outbox's last sends, then the board's farewell) and for the send
    under way, sleeping in discord.py between its retries of the 500 (after the third,
    5 s), for nothing: the rows stay in the outbox, sent after the next start. It now
    stops at once."""
    ticker = _relayed.program("ticker", "relay_ticker.py", tmp_path / "runs", 20, relay="all")
    config = _config(tmp_path, fake_discord, ticker, log_channel="ops")
    async with dsup_process(config) as dsup:
        await fake_discord.wait_until(
            lambda: bool(fake_discord.bot_messages("ops")), timeout_seconds=STARTED_SECONDS
        )
        async with fake_discord.gateway_outage():
            failing = fake_discord.fail_route(*MESSAGES, status=500, times=None)
            # One send, retried by discord.py 1 s and 3 s after its first 500.
            await wait_until(lambda: failing.hits >= 3, seconds=20)
            started = anyio.current_time()
            assert await stop_process(dsup, signal.SIGTERM) == 0
            stopped_in = anyio.current_time() - started
    assert len(unsent_rows(config)) >= 1  # kept for the next start
    # Stalled, it is 5 s or more whatever the load; about 1 s otherwise.
    assert stopped_in < FINISH_SECONDS
