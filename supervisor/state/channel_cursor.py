"""How far the bridge has read each task channel: the last message id it handled.

At start and after each reconnect the bridge reads a task channel's history from
here on, so tasks posted while dsup was away are picked up once.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

    from supervisor.state.ledger import Ledger


class ChannelCursor:
    """The ``channel_cursor`` table of a ledger; synchronous, thread-safe."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._lock = threading.Lock()
        self._waiting: dict[int, int] = {}  # moves the disk has not taken yet

    def get(self, channel: int) -> int | None:
        """The last message id handled in ``channel``, or None before the first."""
        rows = self._ledger.read(
            "SELECT message_id FROM channel_cursor WHERE channel = ?", (channel,)
        )
        stored = int(rows[0][0]) if rows else None
        with self._lock:
            if not self._ledger.unrecorded:
                self._waiting.clear()
            waiting = self._waiting.get(channel)
        if waiting is None:
            return stored
        return waiting if stored is None else max(stored, waiting)

    def advance(self, channel: int, message_id: int) -> None:
        """Move the cursor of ``channel`` to ``message_id`` if that is later.

        On a full disk the move waits in the ledger's memory (see
        :meth:`Ledger.record`); until then :meth:`get` says where it is.
        """

        def record(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO channel_cursor (channel, message_id) VALUES (?, ?) "
                "ON CONFLICT (channel) DO UPDATE SET message_id = excluded.message_id "
                "WHERE excluded.message_id > channel_cursor.message_id",
                (channel, message_id),
            )

        if self._ledger.record("task channel's cursor", record) is None:
            with self._lock:
                if message_id > self._waiting.get(channel, 0):
                    self._waiting[channel] = message_id
