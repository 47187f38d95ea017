"""`dsup ctl shutdown` waits long enough for a node with a bridge to finish.

After the last sweep the bridge may still send what its outbox holds and close: a
client that gave up before would report a node "that has not exited" while it is
still saying goodbye.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import anyio

from supervisor.bridge.bridge import DiscordBridge
from supervisor.state.statedir import SOCKET_NAME
from tests._control import program
from tests._wait import wait_until
from tests.bridge._bridge import dsup_process, node_config
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]


async def test_ctl_shutdown_allows_for_the_bridges_farewell(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    tick = program("tick", "child_ready.py")  # stop_timeout_seconds = 3
    config = node_config(tmp_path, fake_discord, tick, name="bye", channels={"log_channel": "ops"})
    async with dsup_process(config) as node:
        await wait_until(lambda: (tmp_path / "state" / SOCKET_NAME).exists(), seconds=20)
        ctl = [sys.executable, "-m", "supervisor", "ctl", "-c", str(config)]
        answer = await anyio.run_process([*ctl, "shutdown", "--json", "--no-wait"], check=False)
        assert answer.returncode == 0, answer.stderr
        report = json.loads(answer.stdout)
        # The stop (3 s and a 5 s margin), the last sweep and exit (15 s), then the
        # bridge's outbox and close.
        assert report["wait_seconds"] == 3 + 5 + 15 + DiscordBridge.farewell_seconds
        with anyio.fail_after(report["wait_seconds"]):
            assert await node.wait() == 0
