"""How far the bridge has read each task channel: the last message id it handled.

At start and after each reconnect the bridge reads a task channel's history from
here on, so tasks posted while dsup was away are picked up once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.state.ledger import Ledger


class ChannelCursor:
    """The ``channel_cursor`` table of a ledger; synchronous, thread-safe."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def get(self, channel: int) -> int | None:
        """The last message id handled in ``channel``, or None before the first."""
        rows = self._ledger.read(
            "SELECT message_id FROM channel_cursor WHERE channel = ?", (channel,)
        )
        return int(rows[0][0]) if rows else None

    def advance(self, channel: int, message_id: int) -> None:
        """Move the cursor of ``channel`` to ``message_id`` if that is later."""
        self._ledger.write(
            "INSERT INTO channel_cursor (channel, message_id) VALUES (?, ?) "
            "ON CONFLICT (channel) DO UPDATE SET message_id = excluded.message_id "
            "WHERE excluded.message_id > channel_cursor.message_id",
            [(channel, message_id)],
        )
