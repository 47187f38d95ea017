"""A ledger whose disk is full: every write that needs room fails with sqlite's real SQLITE_FULL.

``PRAGMA max_page_count`` caps the database at its current size, and the pages of
the tables dsup writes are filled, so no new record fits until the block ends (an
update in place may still fit, as on a real disk). ``ledger_read_only`` refuses
every write.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from supervisor.state.ledger import Ledger

_FILLERS = (
    "INSERT INTO audit (at, actor, source, command, target, outcome, detail)"
    " VALUES (0, 'filler', 'local', 'filler', '', 'ok', :pad)",
    "INSERT INTO runs (run_id, process, program, pid, create_time, started_at, settled)"
    " VALUES ('filler-' || hex(randomblob(8)) || :pad, 'filler:0', 'filler', 0, 0, 0, 1)",
    "INSERT INTO run_procs (run_id, pid, create_time)"
    " SELECT run_id, abs(random()), length(:pad) FROM runs WHERE process = 'filler:0' LIMIT 1",
    # The bridge's tables, under negative ids and keys nothing of dsup uses.
    "INSERT INTO outbox (id, channel, kind, content, created_at, until_at, status)"
    " VALUES (-abs(random()), -1, 'filler', :pad, 0, 0, 'sent')",
    "INSERT INTO outbox_meta (key, value) VALUES ('filler-' || hex(randomblob(8)), :pad)",
    "INSERT INTO channel_cursor (channel, message_id) VALUES (-abs(random()), length(:pad))",
    "INSERT INTO discord_board (channel_id, message_id, posted_at)"
    " VALUES (-abs(random()), length(:pad), 0)",
    "INSERT INTO tasks (program, text, source, author, max_attempts, state, created_at)"
    " VALUES ('filler', :pad, 'local', 'filler', 1, 'done', 0)",
    # What workers report and ask, under negative ids.
    "INSERT INTO worker_results (id, at, process, program, run_id, text)"
    " VALUES (-abs(random()), 0, 'filler:0', 'filler', 'filler', :pad)",
    "INSERT INTO worker_questions (id, asked_at, process, program, run_id, worker_id, text,"
    " status) VALUES (-abs(random()), 0, 'filler:0', 'filler', 'filler', '1', :pad, 'gone')",
)


@contextlib.contextmanager
def ledger_full(ledger: Ledger) -> Iterator[None]:
    """Fill the ledger's database until the block ends ("space returns" then)."""
    # One filler run first, while there is room, for the run_procs rows to point to.
    with ledger.transaction() as conn:
        conn.execute(_FILLERS[1], {"pad": ""})
    (pages,) = ledger.read("PRAGMA page_count")[0]
    ledger.read(f"PRAGMA max_page_count = {pages}")
    for sql in _FILLERS:
        for size in (1024, 64, 1, 0):
            for _ in range(100_000):  # bounded: a page holds far fewer rows
                try:
                    with ledger.transaction() as conn:
                        conn.execute(sql, {"pad": "x" * size})
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorname != "SQLITE_FULL":
                        raise
                    break
    try:
        yield
    finally:
        ledger.read("PRAGMA max_page_count = 1073741823")


@contextlib.contextmanager
def ledger_read_only(ledger: Ledger) -> Iterator[None]:
    """The ledger's file system gone read-only (as ext4 remounts after an I/O error).

    Every write, an update in place too, fails with sqlite's real SQLITE_READONLY
    (``PRAGMA query_only``) until the block ends.
    """
    ledger.read("PRAGMA query_only = 1")
    try:
        yield
    finally:
        ledger.read("PRAGMA query_only = 0")
