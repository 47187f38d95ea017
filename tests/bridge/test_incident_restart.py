"""Incidents across a SIGKILL of the real ``dsup run``: one message per process, continued.

dsup runs as a subprocess (so it can be killed) against the fake Discord served by this
test's event loop, through unmodified discord.py.
"""

from __future__ import annotations

import re
import signal
from typing import TYPE_CHECKING, Any

from tests.bridge._bridge import dsup_process, node_config, stop_process
from tests.bridge._relayed import program
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]


def _incidents(fake: FakeDiscord) -> list[dict[str, Any]]:
    return [m for m in fake.bot_messages("ops") if "`crashy:0`" in str(m.get("content", ""))]


def _crashes(message: dict[str, Any]) -> int:
    found = re.search(r"crashed (\d+) times", str(message["content"]))
    return int(found[1]) if found else 0


async def test_incident_of_a_crash_loop_is_continued_after_a_sigkill_of_dsup(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """After a SIGKILL, the open incident said "crashed N times" for ever and the next
    dsup opened a second message for the same crash loop."""
    crashy = program(
        "crashy",
        "relay_crash_loop.py",
        tmp_path / "runs",
        10_000,
        start_seconds=0.1,
        start_retries=10_000,
        backoff_seconds=0.1,
        backoff_max_seconds=0.3,
    )
    config = node_config(tmp_path, fake_discord, crashy, name="n", channels={"log_channel": "ops"})
    async with dsup_process(config) as first:
        (before,) = await fake_discord.wait_until(
            lambda: [m for m in _incidents(fake_discord) if _crashes(m) >= 2],
            timeout_seconds=20,
        )
        await stop_process(first, signal.SIGKILL)
    async with dsup_process(config) as second:
        await fake_discord.wait_until(
            lambda: any(_crashes(m) > _crashes(before) for m in _incidents(fake_discord)),
            timeout_seconds=20,
        )
        assert await stop_process(second, signal.SIGTERM) == 0
    (message,) = _incidents(fake_discord)
    assert message["id"] == before["id"]
    assert "stopped (dsup shutting down)" in message["content"]


async def test_incident_of_a_process_gone_after_a_sigkill_of_dsup_is_closed_at_the_next_start(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    crashy = program("crashy", "relay_crash_loop.py", tmp_path / "runs", 10_000, start_seconds=0.1)
    config = node_config(tmp_path, fake_discord, crashy, name="n", channels={"log_channel": "ops"})
    async with dsup_process(config) as first:
        (before,) = await fake_discord.wait_until(
            lambda: _incidents(fake_discord), timeout_seconds=20
        )
        await stop_process(first, signal.SIGKILL)
    quiet = program("quiet", "child_ready.py")
    config = node_config(tmp_path, fake_discord, quiet, name="n", channels={"log_channel": "ops"})
    async with dsup_process(config) as second:
        (message,) = await fake_discord.wait_until(
            lambda: [m for m in _incidents(fake_discord) if "closed" in str(m["content"])],
            timeout_seconds=20,
        )
        assert await stop_process(second, signal.SIGTERM) == 0
    assert message["id"] == before["id"]
    assert str(message["content"]).startswith(
        "⏹️ `crashy:0` closed (dsup was restarted without it) after "
    )
    assert len(_incidents(fake_discord)) == 1
