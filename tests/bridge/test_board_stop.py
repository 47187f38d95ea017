"""The status board as the real ``dsup run`` stops (SIGTERM) before Discord answered its post.

dsup runs as a subprocess against the fake Discord served by this test's event loop.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest

from tests._control import program, write_config
from tests.bridge._bridge import discord_table, dsup_process, stop_process, token_file
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

pytestmark = pytest.mark.timeout(90)

MESSAGES = ("POST", "/channels/{channel_id}/messages")
TICK = program("tick", "ctl_ticker.py", "0.2")


def _config(tmp_path: Path, fake: FakeDiscord) -> Path:
    table = discord_table(fake, token_file(tmp_path, fake.token), status_channel="general")
    return write_config(tmp_path, TICK, table)


def _texts(fake: FakeDiscord) -> list[str]:
    return [str(m["embeds"][0]["description"]) for m in fake.bot_messages("general")]


async def test_board_says_dsup_stopped_when_its_first_post_is_never_answered(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """Stopped before Discord answered the board's first post, dsup waited for that
    answer as long as it could and left the board it had posted saying RUNNING.
    Here the answer never comes: the farewell finds the board in the channel."""
    held = fake_discord.hold_answers(*MESSAGES)
    config = _config(tmp_path, fake_discord)
    async with dsup_process(config) as dsup:
        await fake_discord.wait_until(lambda: bool(fake_discord.bot_messages("general")))
        assert await stop_process(dsup, signal.SIGTERM) == 0
    (text,) = _texts(fake_discord)
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
        await fake_discord.wait_until(lambda: bool(fake_discord.bot_messages("general")))
        dsup.send_signal(signal.SIGTERM)
        held.release()
        assert await stop_process(dsup, signal.SIGTERM) == 0
    (text,) = _texts(fake_discord)
    assert "dsup stopped <t:" in text
