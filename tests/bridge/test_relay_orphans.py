"""Orphans a killed dsup left, cleaned by the next one, told in the audit channel."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from tests.bridge._bridge import STARTED_SECONDS, dsup_process, node_config, stop_process
from tests.bridge._relayed import program
from tests.bridge.test_relay_restart import _relayed
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]


async def test_audit_channel_tells_the_orphans_cleaned_at_startup(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    fake_discord.add_channel("audit")
    count = program("count", "relay_count.py", tmp_path / "runs", 3, relay="all")
    channels = {"log_channel": "ops", "audit_channel": "audit"}
    config = node_config(tmp_path, fake_discord, count, name="orphaned", channels=channels)
    async with dsup_process(config) as first:
        await fake_discord.wait_until(lambda: _relayed(fake_discord, 1), timeout_seconds=20)
        await stop_process(first, signal.SIGKILL)  # its worker lives on
    async with dsup_process(config) as second:
        told = await fake_discord.wait_for_action(
            "audit",
            kind="create",
            predicate=lambda a: "orphan" in (a.content or ""),
            timeout_seconds=STARTED_SECONDS,
        )
        await fake_discord.wait_until(lambda: _relayed(fake_discord, 2), timeout_seconds=20)
        assert await stop_process(second, signal.SIGTERM) == 0
    assert "🧹 ended 1 orphan process (startup): pids " in (told.content or "")
