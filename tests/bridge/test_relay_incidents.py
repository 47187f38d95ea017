"""Incidents through the fake Discord: FATAL says what to do, stdout stands in for stderr."""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING

from tests.bridge._relayed import program, relayed_node
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

_STDOUT_ONLY = (
    "print('fetching page 1')\n"
    "print('giving up: no route to host', flush=True)\n"
    "raise SystemExit(3)\n"
)


async def test_relay_incidents_say_how_each_ended_and_what_to_do(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    crashy = program(
        "crashy",
        "relay_crash_loop.py",
        tmp_path / "runs",
        100,
        start_seconds=0.2,
        start_retries=2,
        backoff_seconds=0.05,
    )
    command = json.dumps([sys.executable, "-c", _STDOUT_ONLY])
    # start_seconds = 0: any run counts as started, so its exit is a crash, not a failed start.
    quiet = f'[programs.quiet]\ncommand = {command}\nrestart = "never"\nstart_seconds = 0\n'
    async with relayed_node(tmp_path, fake_discord, crashy, quiet):
        await fake_discord.wait_until(
            lambda: (
                any("is FATAL" in str(m["content"]) for m in fake_discord.bot_messages("ops"))
                and any(
                    "🔴 `quiet:0`" in str(m["content"]) for m in fake_discord.bot_messages("ops")
                )
            ),
            timeout_seconds=20,
        )
    messages = [str(m["content"]) for m in fake_discord.bot_messages("ops")]
    # Each message may start with a line naming the other's crash: both incidents
    # may open before either takes the channel's turn (under load).
    (fatal,) = [m for m in messages if "⛔ `crashy:0`" in m]
    # How many crashes: two failed starts, and any run that outlived start_seconds.
    found = re.search(r"⛔ `crashy:0` is FATAL after (\d+) crashes", fatal)
    assert found is not None, fatal
    assert "start it again with `/start crashy:0`" in fatal
    assert f"last lines of stderr:\n```\nTraceback: crash {found[1]}\n```" in fatal
    (ended,) = [m for m in messages if "🔴 `quiet:0`" in m]
    assert "🔴 `quiet:0` crashed: exit code 3, " in ended
    assert "now EXITED: not restarted: restart = never" in ended
    assert "<t:" in ended
    assert "last lines of stdout:\n```\nfetching page 1\ngiving up: no route to host\n```" in ended
