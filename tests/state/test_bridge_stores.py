"""The bridge's small stores on a full disk (task channel cursor, board), and their migration."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING

import pytest

from supervisor.state.board import BoardStore
from supervisor.state.channel_cursor import ChannelCursor
from supervisor.state.command_sync import CommandSyncStore
from supervisor.state.ledger import _MIGRATIONS, Ledger
from supervisor.state.outbox import Outbox
from supervisor.state.question_posts import QuestionPosts
from tests._ledger_full import ledger_full, ledger_read_only

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger.sqlite3") as led:
        yield led


def test_channel_cursor_on_a_full_disk_moves_and_is_written_later(ledger: Ledger) -> None:
    """A full disk made the cursor raise: the bridge's task desk failed and reconnected."""
    cursor = ChannelCursor(ledger)
    cursor.advance(5, 100)
    with ledger_full(ledger):
        cursor.advance(5, 300)
        cursor.advance(5, 200)  # never backwards
        cursor.advance(6, 50)
        assert (cursor.get(5), cursor.get(6)) == (300, 50)
    assert ledger.retry_deferred()
    reread = ChannelCursor(ledger)
    assert (reread.get(5), reread.get(6)) == (300, 50)


def test_board_store_on_a_full_disk_remembers_the_board_later(ledger: Ledger) -> None:
    store = BoardStore(ledger)
    with ledger_full(ledger):
        store.remember(7, 4242)
    assert ledger.retry_deferred()
    assert store.message_id(7) == 4242
    with ledger_full(ledger):
        store.forget(7)
    assert ledger.retry_deferred()
    assert store.message_id(7) is None


def test_command_sync_on_a_read_only_disk_remembers_the_digest_later(ledger: Ledger) -> None:
    """A refused write made the digest raise: the bridge's connection failed."""
    store = CommandSyncStore(ledger)
    store.record(9, "old")
    with ledger_read_only(ledger):
        store.record(9, "new")
        assert store.digest(9) == "old"  # until the disk takes it
    assert ledger.retry_deferred()
    assert store.digest(9) == "new"


def test_question_messages_of_an_older_ledger_become_outbox_rows(tmp_path: Path) -> None:
    """The migration that moved question messages into the outbox keeps the unsettled ones."""
    path = tmp_path / "ledger.sqlite3"
    mine = next(
        i for i, s in enumerate(_MIGRATIONS) if "question-closed" in s or "'question:'" in s
    )
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for script in _MIGRATIONS[:mine]:
            conn.executescript(script)
        conn.execute(f"PRAGMA user_version = {mine}")
        for question_id, status in ((1, "gone"), (2, "answered"), (3, "open")):
            conn.execute(
                "INSERT INTO worker_questions (id, asked_at, process, program, run_id, "
                "worker_id, text, status) VALUES (?, 0, 'w:0', 'w', 'r', 'q', 'Go?', ?)",
                (question_id, status),
            )
        conn.executemany(
            "INSERT INTO discord_questions (question_id, channel_id, message_id, settled) "
            "VALUES (?, 55, ?, ?)",
            [(1, 9001, 0), (2, 9002, 1), (3, 9003, 0)],
        )
        conn.execute("INSERT INTO outbox_meta (key, value) VALUES ('task-answer:4', '1')")
    with Ledger.open(path) as ledger:
        unsettled = QuestionPosts(ledger).unsettled()
        assert [(p.question.id, p.status) for p in unsettled] == [(1, "gone")]
        box = Outbox(ledger)
        row = box.get(int(box.meta("question:1") or 0))
        assert row is not None
        assert (row.channel, row.kind) == (55, "question")
        assert box.meta("question:3") is not None  # open: its end is queued when it closes
        assert box.meta("question:2") is None  # settled already: nothing left to do
        (marked,) = ledger.read("SELECT row_id FROM outbox_meta WHERE key = 'task-answer:4'")
        assert marked[0] is not None  # pruned in time, with the rows around it
        assert not ledger.read("SELECT name FROM sqlite_master WHERE name = 'discord_questions'")
