"""Tests of the files outbox rows send: kept before the row, removed once it is settled."""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

import pytest

from supervisor.state.ledger import Ledger
from supervisor.state.outbox import Outbox
from supervisor.state.outbox_files import DIR_NAME, MAX_FILES, OutboxFiles
from tests._ledger_full import ledger_full

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

A = 111
TAIL = [("tail-web_0.txt", b"line 1\nline 2\n"), ("../web-0.stdout.log", b"\x00\xffbinary")]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger.sqlite3") as led:
        yield led


@pytest.fixture
def outbox(ledger: Ledger) -> Outbox:
    return Outbox(ledger)


def _folders(tmp_path: Path) -> list[str]:
    root = tmp_path / DIR_NAME
    return sorted(os.listdir(root)) if root.exists() else []


def test_outbox_files_are_read_back_in_order_under_safe_names(tmp_path: Path) -> None:
    files = OutboxFiles(tmp_path / DIR_NAME)
    name = files.keep(TAIL)
    assert files.read(name) == [TAIL[0], ("web-0.stdout.log", TAIL[1][1])]
    assert (tmp_path / DIR_NAME / name).stat().st_mode & 0o777 == 0o700
    assert not (tmp_path / "web-0.stdout.log").exists()
    files.remove(name)
    assert files.read(name) == []
    assert _folders(tmp_path) == []


def test_outbox_files_past_their_bound_are_refused_and_nothing_is_left(tmp_path: Path) -> None:
    files = OutboxFiles(tmp_path / DIR_NAME, max_bytes=30)
    kept = files.keep([("a.txt", b"x" * 20)])
    with pytest.raises(OSError, match="hold 0 MiB of files already") as refused:
        files.keep([("b.txt", b"y" * 20)])
    assert refused.value.errno == errno.EDQUOT
    assert _folders(tmp_path) == [kept]
    with pytest.raises(ValueError, match="do not fit one message"):
        files.keep([("c.txt", b"")] * (MAX_FILES + 1))


def test_outbox_row_files_go_when_it_is_sent_or_abandoned(tmp_path: Path, outbox: Outbox) -> None:
    sent = outbox.post(A, "reply", "tail", now=1.0, reply_to=5, files=outbox.files.keep(TAIL))
    (row,) = outbox.claim(now=2.0).rows
    assert row.id == sent
    assert [name for name, _ in outbox.files.read(row.files)] == [
        "tail-web_0.txt",
        "web-0.stdout.log",
    ]
    outbox.mark_sent(sent, 9001, now=3.0)
    assert _folders(tmp_path) == []
    refused = outbox.post(A, "reply", "logs", now=4.0, files=outbox.files.keep(TAIL))
    assert len(_folders(tmp_path)) == 1
    outbox.mark_abandoned(refused, "400 (code 50035) Invalid Form Body")
    assert _folders(tmp_path) == []
    gone = outbox.get(refused)
    assert gone is not None
    assert gone.files == ""


def test_outbox_sweep_keeps_the_files_of_pending_rows_only(tmp_path: Path, outbox: Outbox) -> None:
    """A crash between keeping files and writing their row leaves a folder nobody names."""
    pending = outbox.files.keep(TAIL)
    outbox.post(A, "reply", "tail", now=1.0, files=pending)
    outbox.files.keep(TAIL)  # its row was never written
    (tmp_path / DIR_NAME / "stray").write_bytes(b"")
    assert outbox.sweep_files() == 2
    assert _folders(tmp_path) == [pending]


def test_outbox_files_of_a_row_written_late_on_a_full_disk_stay_until_it_is_sent(
    tmp_path: Path, ledger: Ledger, outbox: Outbox
) -> None:
    """The files are kept first; the row waits in memory and is written, then sent."""
    with ledger_full(ledger):
        row_id = outbox.post(A, "reply", "tail", now=1.0, files=outbox.files.keep(TAIL))
        assert ledger.unrecorded == 1
        assert outbox.claim(now=2.0).rows == []
    (row,) = outbox.claim(now=3.0).rows
    assert row.id == row_id
    assert len(outbox.files.read(row.files)) == 2
    outbox.mark_sent(row_id, 9001, now=4.0)
    assert _folders(tmp_path) == []
