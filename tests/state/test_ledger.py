"""Tests of the sqlite ledger: runs, leftovers, audit, schema and concurrency."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sqlite3
from typing import TYPE_CHECKING

import anyio
import pytest

from supervisor.errors import LedgerError
from supervisor.state import ledger as ledger_module
from supervisor.state.ledger import SCHEMA_VERSION, Ledger
from supervisor.state.records import AuditRecord, LeftoverProcess, ProcIdent
from tests._ledger_full import ledger_full

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger.sqlite3") as led:
        yield led


def _start(led: Ledger, run_id: str, *, pid: int = 100, at: float = 1.0, proc: str = "w:0") -> None:
    led.record_run_start(
        run_id=run_id,
        process=proc,
        program=proc.split(":")[0],
        pid=pid,
        create_time=at - 0.5,
        started_at=at,
    )


def test_ledger_records_run_start_and_exit(ledger: Ledger) -> None:
    _start(ledger, "r1", pid=42, at=10.0)
    (run,) = ledger.recent_runs()
    assert (run.run_id, run.process, run.program, run.pid) == ("r1", "w:0", "w", 42)
    assert run.ident == ProcIdent(42, 9.5)
    assert run.ended_at is None
    assert not run.is_settled
    ledger.record_run_exit(run_id="r1", exit_code=None, exit_signal=15, ended_at=12.0)
    (run,) = ledger.recent_runs()
    assert (run.ended_at, run.exit_code, run.exit_signal) == (12.0, None, 15)


def test_ledger_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    with Ledger.open(path) as led:
        _start(led, "r1")
        led.record_descendants("r1", [ProcIdent(7, 1.25)])
    with Ledger.open(path) as led:
        assert [r.run_id for r in led.open_runs()] == ["r1"]
        assert {p.ident for p in led.leftover_processes()} == {
            ProcIdent(100, 0.5),
            ProcIdent(7, 1.25),
        }


def test_ledger_leftovers_are_unended_mains_and_unsettled_descendants(ledger: Ledger) -> None:
    _start(ledger, "running", pid=1)
    _start(ledger, "exited", pid=2)
    ledger.record_run_exit(run_id="exited", exit_code=0, exit_signal=None, ended_at=5.0)
    _start(ledger, "settled", pid=3)
    ledger.record_descendants("exited", [ProcIdent(20, 2.0), ProcIdent(21, 2.0)])
    ledger.record_descendants("exited", [ProcIdent(20, 2.0)])  # seen twice: kept once
    ledger.record_descendants("settled", [ProcIdent(30, 3.0)])
    ledger.forget_runs(["settled"])

    assert [r.run_id for r in ledger.open_runs()] == ["running", "exited"]
    assert sorted(ledger.leftover_processes(), key=lambda p: p.ident.pid) == [
        LeftoverProcess(run_id="running", process="w:0", ident=ProcIdent(1, 0.5), is_main=True),
        LeftoverProcess(run_id="exited", process="w:0", ident=ProcIdent(20, 2.0), is_main=False),
        LeftoverProcess(run_id="exited", process="w:0", ident=ProcIdent(21, 2.0), is_main=False),
    ]
    # Settled runs stay in the history.
    assert {r.run_id for r in ledger.recent_runs()} == {"running", "exited", "settled"}
    assert [r.is_settled for r in ledger.recent_runs() if r.run_id == "settled"] == [True]


def test_ledger_leftovers_of_one_run(ledger: Ledger) -> None:
    _start(ledger, "r1", pid=1)
    _start(ledger, "r2", pid=2)
    ledger.record_descendants("r2", [ProcIdent(20, 2.0)])
    assert {(p.ident.pid, p.is_main) for p in ledger.leftover_processes("r2")} == {
        (2, True),
        (20, False),
    }


def test_ledger_keeps_only_the_newest_settled_runs_and_every_open_one(tmp_path: Path) -> None:
    """A crash-looping worker adds a run per restart; the history stays bounded."""
    with Ledger.open(tmp_path / "ledger.sqlite3", runs_keep=3) as led:
        _start(led, "open", pid=1)
        for i in range(6):
            _start(led, f"done{i}", pid=10 + i)
            led.record_descendants(f"done{i}", [ProcIdent(100 + i, 1.0)])
            led.forget_runs([f"done{i}"])
        _start(led, "last", pid=99)
        kept = {r.run_id for r in led.recent_runs(limit=100)}
        assert kept == {"open", "done4", "done5", "last"}
        assert {p.run_id for p in led.leftover_processes()} == {"open", "last"}


def test_ledger_recent_runs_newest_first_filtered_and_limited(ledger: Ledger) -> None:
    for i in range(5):
        _start(ledger, f"a{i}", at=float(i), proc="a:0")
        _start(ledger, f"b{i}", at=float(i), proc="b:0")
    assert [r.run_id for r in ledger.recent_runs("a:0", limit=3)] == ["a4", "a3", "a2"]
    assert len(ledger.recent_runs(limit=7)) == 7
    assert ledger.recent_runs("nope") == []


def test_ledger_audit_rows_newest_first(ledger: Ledger) -> None:
    ledger.record_audit(
        actor="alice", source="local", command="stop", target="w:0", outcome="ok", at=1.0
    )
    ledger.record_audit(
        actor="bob", source="discord", command="restart", target="w", outcome="denied"
    )
    rows = ledger.audit_rows()
    assert [r.actor for r in rows] == ["bob", "alice"]
    assert rows[1] == AuditRecord(
        id=rows[1].id,
        at=1.0,
        actor="alice",
        source="local",
        command="stop",
        target="w:0",
        outcome="ok",
        detail="",
    )
    assert rows[0].at > 1.0
    assert len(ledger.audit_rows(limit=1)) == 1


def test_ledger_audit_refuses_unknown_source(ledger: Ledger) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        ledger.record_audit(
            actor="x",
            source="web",  # type: ignore[arg-type]
            command="stop",
            target="",
            outcome="ok",
        )
    assert ledger.audit_rows() == []


def test_ledger_schema_version_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    Ledger.open(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


def test_ledger_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(LedgerError, match="newer"):
        Ledger.open(path)


def test_ledger_refuses_a_non_database_saying_what_to_do(tmp_path: Path) -> None:
    """The message gave no hint of the way out, nor of its cost."""
    path = tmp_path / "l.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError) as info:
        Ledger.open(path)
    assert info.value.path == path
    assert info.value.reason == (
        f"cannot be used: file is not a database; move it aside (mv {str(path)!r} "
        f"{str(path) + '.corrupt'!r}) and start dsup again with a new one: the processes its "
        "last run left behind will then not be found and ended (look for them with ps), and "
        "its run history and audit are left in the old file"
    )


def test_ledger_that_cannot_be_opened_gets_no_advice_to_move_it(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "l.sqlite3"
    with pytest.raises(LedgerError) as info:
        Ledger.open(path)
    assert "move it aside" not in info.value.reason


async def test_ledger_is_safe_from_many_threads(ledger: Ledger) -> None:
    def work(n: int) -> None:
        for i in range(50):
            _start(ledger, f"t{n}-{i}", pid=i)
            ledger.record_descendants(f"t{n}-{i}", [ProcIdent(1000 + i, 1.0)])
            ledger.leftover_processes()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(anyio.to_thread.run_sync, work, n)
    assert len(ledger.open_runs()) == 200
    assert len(ledger.leftover_processes()) == 400


def test_ledger_failed_write_rolls_back(ledger: Ledger) -> None:
    _start(ledger, "r1")
    with pytest.raises(sqlite3.IntegrityError):
        _start(ledger, "r1")
    _start(ledger, "r2")
    assert [r.run_id for r in ledger.open_runs()] == ["r1", "r2"]


def test_ledger_drops_descendants_of_unknown_runs(ledger: Ledger) -> None:
    ledger.record_descendants("never-started", [ProcIdent(5, 1.0)])
    assert ledger.leftover_processes() == []


def test_ledger_audit_keeps_only_the_newest_rows(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.sqlite3", audit_keep_rows=3) as led:
        for i in range(7):
            led.record_audit(
                actor="cron", source="local", command="status", target=str(i), outcome="ok"
            )
        assert [row.target for row in led.audit_rows()] == ["6", "5", "4"]


def test_ledger_on_a_full_disk_keeps_records_and_writes_them_when_space_returns(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk made every record raise: commands failed, processes went FATAL."""
    _start(ledger, "before")
    with caplog.at_level(logging.WARNING, logger="supervisor.state.ledger"), ledger_full(ledger):
        for i in range(20):
            ledger.record_audit(
                actor="a", source="local", command="status", target=str(i), outcome="ok"
            )
        _start(ledger, "during", pid=7)
        ledger.record_descendants("during", [ProcIdent(8, 1.0)])
        ledger.record_run_exit(run_id="during", exit_code=1, exit_signal=None, ended_at=2.0)
        ledger.forget_runs(["before"])
        assert ledger.unrecorded == 24
        assert not ledger.retry_deferred()  # still full
        assert [r.levelno for r in caplog.records] == [logging.ERROR]  # said once
    assert ledger.retry_deferred()
    assert ledger.unrecorded == 0
    targets = [r.target for r in ledger.audit_rows(limit=20) if r.actor == "a"]
    assert targets == [str(i) for i in reversed(range(20))]  # all of them, in order
    (during,) = [r for r in ledger.recent_runs(limit=1000) if r.run_id == "during"]
    assert during.exit_code == 1
    assert {p.ident for p in ledger.leftover_processes("during")} == {ProcIdent(8, 1.0)}
    assert "before" not in {r.run_id for r in ledger.open_runs()}
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.WARNING]


def test_ledger_on_a_full_disk_says_what_it_could_not_keep(
    ledger: Ledger, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_module, "DEFERRED_MAX", 3)
    with caplog.at_level(logging.WARNING, logger="supervisor.state.ledger"), ledger_full(ledger):
        for i in range(5):
            ledger.record_audit(actor="a", source="local", command="c", target=str(i), outcome="ok")
        ledger.record_run_exit(run_id="x", exit_code=0, exit_signal=None, ended_at=1.0)
    ledger.retry_deferred()
    assert [r.target for r in ledger.audit_rows(limit=3) if r.actor == "a"] == ["2", "1", "0"]
    said = caplog.records[-1]
    assert said.levelno == logging.WARNING
    assert "2 audit row" in said.getMessage()
    assert "1 run exit" in said.getMessage()


@pytest.mark.parametrize("name", ["ledger.sqlite3", "ledger.sqlite3-wal"])
def test_ledger_refuses_a_link(tmp_path: Path, name: str) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / name).symlink_to(victim)
    with pytest.raises(LedgerError, match="symbolic link"):
        Ledger.open(tmp_path / "ledger.sqlite3")
    assert victim.read_bytes() == b"precious"


def _sqlite_memory() -> int:
    """Bytes sqlite holds in this process (the library Python's sqlite3 module uses)."""
    library = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
    library.sqlite3_memory_used.restype = ctypes.c_int64
    return int(library.sqlite3_memory_used())


def test_ledger_release_memory_frees_the_page_cache(ledger: Ledger) -> None:
    """A sweep reads a row of every run: its pages stayed cached while the node rested."""
    for i in range(3000):
        _start(ledger, f"run{i}", pid=1000 + i, proc=f"w:{i}")
    assert len(ledger.open_runs()) == 3000
    held = _sqlite_memory()
    ledger.release_memory()
    assert held - _sqlite_memory() > 200_000
    assert len(ledger.open_runs()) == 3000  # read again from the file
