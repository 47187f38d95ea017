"""Which message is the Discord status board, kept in the ledger across restarts.

One row per status channel: a restarted dsup edits the same message instead of
posting a second board.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

    from supervisor.state.ledger import Ledger


class BoardStore:
    """The board's message id per channel. Synchronous: call through a thread."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def message_id(self, channel_id: int) -> int | None:
        """The board's message in ``channel_id``, if one was recorded."""
        rows = self._ledger.read(
            "SELECT message_id FROM discord_board WHERE channel_id = ?", (channel_id,)
        )
        return int(rows[0]["message_id"]) if rows else None

    def remember(self, channel_id: int, message_id: int) -> None:
        """Record ``message_id`` as the board of ``channel_id``."""
        row = (channel_id, message_id, time.time())

        def record(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO discord_board (channel_id, message_id, posted_at) VALUES (?, ?, ?) "
                "ON CONFLICT (channel_id) DO UPDATE SET message_id = excluded.message_id, "
                "posted_at = excluded.posted_at",
                row,
            )

        # On a full disk it waits in the ledger's memory; the board keeps its id
        # meanwhile, and a restart before it is written finds the board in history.
        self._ledger.record("status board's message", record)

    def forget(self, channel_id: int) -> None:
        """Forget the board of ``channel_id`` (it was deleted)."""

        def record(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM discord_board WHERE channel_id = ?", (channel_id,))

        self._ledger.record("status board's message", record)
