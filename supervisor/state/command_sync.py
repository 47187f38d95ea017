"""The digest of the Discord slash commands last registered, per guild, in the ledger.

Discord allows 200 command creations a day per guild, so the bridge registers its
commands only when their definition changed; this store remembers what it last sent.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

    from supervisor.state.ledger import Ledger


class CommandSyncStore:
    """Reads and writes the ``discord_command_sync`` table of a ledger."""

    def __init__(self, ledger: Ledger) -> None:
        """Use the table in ``ledger`` (created by its migrations)."""
        self._ledger = ledger

    def digest(self, guild_id: int) -> str | None:
        """The digest of the commands last registered in ``guild_id``, None if never."""
        rows = self._ledger.read(
            "SELECT digest FROM discord_command_sync WHERE guild_id = ?", (guild_id,)
        )
        return str(rows[0]["digest"]) if rows else None

    def record(self, guild_id: int, digest: str, *, at: float | None = None) -> None:
        """Remember that the commands of ``digest`` are now registered in ``guild_id``.

        On a full disk it is written when the disk takes it (through ``Ledger.record``);
        if it is lost, the next connection registers the commands again.
        """
        row = (guild_id, digest, time.time() if at is None else at)

        def record(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO discord_command_sync (guild_id, digest, synced_at) VALUES (?, ?, ?) "
                "ON CONFLICT (guild_id) DO UPDATE SET digest = excluded.digest, "
                "synced_at = excluded.synced_at",
                row,
            )

        self._ledger.record("slash commands registered", record)
