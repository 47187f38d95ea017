"""The bot token in dsup's environment never reaches a worker, so no relay can show it."""

from __future__ import annotations

import json
import signal
import sys
from typing import TYPE_CHECKING

from tests.bridge._bridge import STARTED_SECONDS, dsup_process, node_config, stop_process
from tests.discord_fake.pytest_plugin import fake_discord
from tests.discord_fake.ratelimit import MESSAGES_ROUTE

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

_SHOW_ENV = (
    "import os, signal\n"
    "print('token:', os.environ.get('DSUP_DISCORD_TOKEN'), flush=True)\n"
    "signal.pause()\n"
)


async def test_relay_never_shows_the_token_a_worker_could_print(
    tmp_path: Path, fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers inherited dsup's environment with the bot token (token_env, the default):
    a worker printing its environment put the token in its log and in log_channel."""
    command = json.dumps([sys.executable, "-u", "-c", _SHOW_ENV])
    programs = f'[programs.show]\ncommand = {command}\nrelay = "all"\n'
    config = node_config(
        tmp_path, fake_discord, programs, name="secret", channels={"log_channel": "ops"}
    )
    text = config.read_text(encoding="utf-8")
    token_line = next(line for line in text.splitlines() if line.startswith("token_file"))
    config.write_text(text.replace(token_line, 'token_env = "DSUP_DISCORD_TOKEN"'))
    monkeypatch.setenv("DSUP_DISCORD_TOKEN", fake_discord.token)
    # Not a test of the pace: the worker's line need not wait for Discord's 5 s window.
    fake_discord.set_rate_limit(*MESSAGES_ROUTE, limit=5, per_seconds=1.0)
    async with dsup_process(config) as dsup:
        shown = await fake_discord.wait_for_action(
            "ops",
            kind="create",
            predicate=lambda a: "token:" in (a.content or ""),
            timeout_seconds=STARTED_SECONDS,
        )
        assert await stop_process(dsup, signal.SIGTERM) == 0
    assert "token: None" in (shown.content or "")
    recorded = [p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert all(fake_discord.token.encode() not in data for data in recorded)
