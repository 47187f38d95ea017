"""The status board shows the bridge's problems (a paused channel) under its health line."""

from __future__ import annotations

from supervisor.bridge.board_text import render_board
from supervisor.commands.health import BridgeHealth


def test_board_lists_the_bridges_problems() -> None:
    health = BridgeHealth(
        state="connected",
        since=1_700_000_000.0,
        user="dsup-bot",
        problems=("channel 42 refuses dsup's messages (403 Missing Access): paused",),
    )
    board = render_board([], node="n", health=health)
    assert "⚠️ channel 42 refuses dsup's messages (403 Missing Access): paused" in board.body
    stopped = render_board([], node="n", health=health, stopped_at=1_700_000_100.0)
    assert "⚠️" not in stopped.body
