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
from tests.bridge._bridge import board_texts, bridged_node, dsup_process, node_config
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


async def test_a_farewell_that_cannot_finish_still_closes_the_client(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """The board's look in its channel goes unanswered as the node stops: the farewell
    gives up within its share of the bound and the client is still closed. Left open,
    its heartbeat thread outlived the event loop and failed in whatever ran next."""
    held = fake_discord.hold_answers("GET", "/channels/{channel_id}/messages", times=None)
    async with bridged_node(tmp_path, fake_discord, program("tick", "child_ready.py")):
        await wait_until(lambda: held.hits >= 1, seconds=10)
        assert fake_discord.gateway.live_connections == 1
    await wait_until(lambda: fake_discord.gateway.live_connections == 0, seconds=5)


async def test_a_look_at_the_board_cut_by_the_stop_leaves_the_farewell_its_route(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """dsup stops while it looks for its board in the channel (a slow answer): the
    farewell looks again and says dsup stopped. A read cancelled mid-request left
    discord.py's bucket for the route exhausted for up to 30 s, and the farewell gave up
    waiting on it."""
    tick = program("tick", "child_ready.py")
    async with bridged_node(tmp_path, fake_discord, tick):
        await fake_discord.wait_until(lambda: bool(fake_discord.bot_messages("general")))
    (board,) = fake_discord.bot_messages("general")
    slow = fake_discord.delay_route("GET", "/channels/{channel_id}/messages", 1.0, times=1)
    async with bridged_node(tmp_path, fake_discord, tick):
        await wait_until(lambda: slow.hits == 1, seconds=10)
        edits = _edits(fake_discord, int(board["id"]))
    assert _edits(fake_discord, int(board["id"])) == edits + 1
    (text,) = board_texts(fake_discord)
    assert "dsup stopped <t:" in text


def _edits(fake: FakeDiscord, message_id: int) -> int:
    return sum(
        1 for a in fake.bot_actions("general") if a.kind == "edit" and a.message_id == message_id
    )
