"""The bridge's small stores (task channel cursor, status board) on a full disk."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from supervisor.state.board import BoardStore
from supervisor.state.channel_cursor import ChannelCursor
from supervisor.state.ledger import Ledger
from tests._ledger_full import ledger_full

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
