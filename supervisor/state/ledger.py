"""The ledger: dsup's durable memory in ``state_dir/ledger.sqlite3`` (stdlib sqlite3).

This module owns the schema and every read and write of the ledger: the history of
runs (pid, create_time, start, end, exit code or signal), the processes seen in each
run's tree (so a dsup killed with SIGKILL finds them on its next start) and the
audit trail of commands. It does not own the records it returns
(``ledger_records``, re-exported here), nor decide what to kill (``reaper``), when
a run starts or ends (``child``) or who may run a command (``commands``).

All methods are synchronous and thread-safe (one connection behind a lock); async
callers wrap them in ``anyio.to_thread.run_sync``.

Durability: WAL with ``synchronous=NORMAL``. A commit survives the death of dsup
itself (SIGKILL, crash) as soon as the method returns; only a crash of the whole
host may lose the last commits, and such a crash takes every child with it.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from dataclasses import fields
from typing import TYPE_CHECKING, Self, TypeVar

from supervisor.errors import SupervisorError
from supervisor.state.records import (
    AuditRecord,
    AuditSource,
    LeftoverProcess,
    ProcIdent,
    RunRecord,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence
    from pathlib import Path
    from types import TracebackType

# The records live in ledger_records; importers keep importing them from here.
__all__ = [
    "AUDIT_KEEP_ROWS",
    "RUNS_KEEP",
    "SCHEMA_VERSION",
    "AuditRecord",
    "AuditSource",
    "Ledger",
    "LedgerError",
    "LeftoverProcess",
    "ProcIdent",
    "RunRecord",
]

logger = logging.getLogger(__name__)

# One script per schema version; version N is reached by running scripts [0, N).
# Add a new script to migrate; never edit a released one.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        run_id      TEXT PRIMARY KEY,
        process     TEXT NOT NULL,
        program     TEXT NOT NULL,
        pid         INTEGER NOT NULL,
        create_time REAL NOT NULL,
        started_at  REAL NOT NULL,
        ended_at    REAL,
        exit_code   INTEGER,
        exit_signal INTEGER,
        settled     INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_process_started ON runs (process, started_at);
    CREATE INDEX runs_unsettled ON runs (settled) WHERE settled = 0;
    CREATE TABLE run_procs (
        run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        pid         INTEGER NOT NULL,
        create_time REAL NOT NULL,
        PRIMARY KEY (run_id, pid, create_time)
    );
    CREATE TABLE audit (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      REAL NOT NULL,
        actor   TEXT NOT NULL,
        source  TEXT NOT NULL CHECK (source IN ('local', 'discord')),
        command TEXT NOT NULL,
        target  TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail  TEXT NOT NULL DEFAULT ''
    );
    """,
    # worker_store: what workers reported and asked over their channel.
    """
    CREATE TABLE worker_results (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      REAL NOT NULL,
        process TEXT NOT NULL,
        program TEXT NOT NULL,
        run_id  TEXT NOT NULL,
        text    TEXT NOT NULL DEFAULT '',
        data    TEXT,
        files   TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX worker_results_process ON worker_results (process, id);
    CREATE TABLE worker_questions (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        asked_at    REAL NOT NULL,
        process     TEXT NOT NULL,
        program     TEXT NOT NULL,
        run_id      TEXT NOT NULL,
        worker_id   TEXT NOT NULL,
        text        TEXT NOT NULL,
        choices     TEXT,
        default_answer TEXT,
        timeout_at  REAL,
        status      TEXT NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'answered', 'timeout', 'gone')),
        answer      TEXT,
        answered_by TEXT NOT NULL DEFAULT '',
        source      TEXT NOT NULL DEFAULT '',
        closed_at   REAL
    );
    CREATE INDEX worker_questions_open ON worker_questions (status) WHERE status = 'open';
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)

_RUN_COLUMNS = (
    "run_id, process, program, pid, create_time, started_at, ended_at, exit_code, "
    "exit_signal, settled"
)


class LedgerError(SupervisorError):
    """Raised when the ledger file cannot be used (newer schema, not a database)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"ledger {str(path)!r}: {reason}")


AUDIT_KEEP_ROWS = 100_000
"""Audit rows kept by default: a script polling ``status`` every second adds
86,400 a day, so the oldest rows are dropped past this many."""
RUNS_KEEP = 10_000
"""Runs kept by default (history for ``recent_runs``); only settled runs are dropped."""


class Ledger:
    """The sqlite ledger of one state directory. Use ``Ledger.open``."""

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        *,
        audit_keep_rows: int = AUDIT_KEEP_ROWS,
        runs_keep: int = RUNS_KEEP,
    ) -> None:
        """Wrap an open, migrated connection; prefer ``Ledger.open``."""
        self.path = path
        self.audit_keep_rows = audit_keep_rows
        self.runs_keep = runs_keep
        self._conn = conn
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls, path: Path, *, audit_keep_rows: int = AUDIT_KEEP_ROWS, runs_keep: int = RUNS_KEEP
    ) -> Ledger:
        """Open (creating if needed) and migrate the ledger at ``path``.

        Args:
            path: the sqlite file.
            audit_keep_rows: how many of the newest audit rows to keep.
            runs_keep: how many of the newest runs to keep once settled.

        Raises:
            LedgerError: the file is not a database or has a newer schema.
        """
        try:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.DatabaseError as exc:
            raise _unusable(path, exc) from exc
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            _migrate(path, conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _unusable(path, exc) from exc
        except BaseException:
            conn.close()
            raise
        return cls(path, conn, audit_keep_rows=audit_keep_rows, runs_keep=runs_keep)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- runs -----------------------------------------------------------------

    def record_run_start(
        self,
        *,
        run_id: str,
        process: str,
        program: str,
        pid: int,
        create_time: float,
        started_at: float,
    ) -> None:
        """Record a new run; committed (crash-safe) when this returns.

        Settled runs older than the newest ``runs_keep`` are dropped in the same
        transaction, so a crash-looping worker cannot grow the ledger forever.
        """
        with self._lock, _transaction(self._conn):
            cursor = self._conn.execute(
                "INSERT INTO runs (run_id, process, program, pid, create_time, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, process, program, pid, create_time, started_at),
            )
            newest = cursor.lastrowid or 0
            self._conn.execute(
                "DELETE FROM runs WHERE settled = 1 AND rowid <= ?", (newest - self.runs_keep,)
            )

    def record_run_exit(
        self, *, run_id: str, exit_code: int | None, exit_signal: int | None, ended_at: float
    ) -> None:
        """Record how a run's main process ended."""
        self.write(
            "UPDATE runs SET ended_at = ?, exit_code = ?, exit_signal = ? WHERE run_id = ?",
            [(ended_at, exit_code, exit_signal, run_id)],
        )

    def record_descendants(self, run_id: str, procs: Sequence[ProcIdent]) -> None:
        """Remember processes seen in a run's tree.

        Already known ones are ignored, and so are all of them if the run was
        never recorded (nothing could find them by run later anyway).
        """
        self.write(
            "INSERT OR IGNORE INTO run_procs (run_id, pid, create_time) "
            "SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = ?)",
            [(run_id, p.pid, p.create_time, run_id) for p in procs],
        )

    def forget_runs(self, run_ids: Iterable[str]) -> None:
        """Mark runs as settled: nothing of them is alive; their history stays."""
        ids = [(run_id,) for run_id in run_ids]
        with self._lock, _transaction(self._conn):
            self._conn.executemany("UPDATE runs SET settled = 1 WHERE run_id = ?", ids)
            self._conn.executemany("DELETE FROM run_procs WHERE run_id = ?", ids)

    def open_runs(self) -> list[RunRecord]:
        """Runs not yet settled: something of them may still be alive."""
        rows = self.read(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE settled = 0 ORDER BY started_at", ()
        )
        return [_run_record(row) for row in rows]

    def leftover_processes(self, run_id: str | None = None) -> list[LeftoverProcess]:
        """Every recorded process of an unsettled run that may still be alive.

        That is the main process of each unsettled run without a recorded exit,
        and every recorded descendant of each unsettled run.

        Args:
            run_id: only this run's (a stop asks for one run: reading every run
                for each of N parallel stops would cost N squared).
        """
        one = "" if run_id is None else " AND r.run_id = :run"
        rows = self.read(
            "SELECT run_id, process, pid, create_time, 1 AS is_main FROM runs r "
            f"WHERE settled = 0 AND ended_at IS NULL{one} "
            "UNION ALL "
            "SELECT p.run_id, r.process, p.pid, p.create_time, 0 FROM run_procs p "
            f"JOIN runs r ON r.run_id = p.run_id WHERE r.settled = 0{one}",
            {"run": run_id},
        )
        return [
            _from_row(
                LeftoverProcess,
                row,
                ident=ProcIdent(row["pid"], row["create_time"]),
                is_main=bool(row["is_main"]),
            )
            for row in rows
        ]

    def recent_runs(self, process: str | None = None, limit: int = 20) -> list[RunRecord]:
        """The latest runs, newest first, of one process or of all."""
        where, args = ("WHERE process = ?", (process,)) if process is not None else ("", ())
        rows = self.read(
            f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY started_at DESC, rowid DESC LIMIT ?",
            (*args, limit),
        )
        return [_run_record(row) for row in rows]

    # -- audit ----------------------------------------------------------------

    def record_audit(
        self,
        *,
        actor: str,
        source: AuditSource,
        command: str,
        target: str,
        outcome: str,
        detail: str = "",
        at: float | None = None,
    ) -> None:
        """Append one command to the audit trail (``at`` defaults to now).

        Rows older than the newest ``audit_keep_rows`` are dropped in the same
        transaction, so the trail stays bounded however often it is written.
        """
        row = (time.time() if at is None else at, actor, source, command, target, outcome, detail)
        with self._lock, _transaction(self._conn):
            cursor = self._conn.execute(
                "INSERT INTO audit (at, actor, source, command, target, outcome, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            newest = cursor.lastrowid or 0
            self._conn.execute("DELETE FROM audit WHERE id <= ?", (newest - self.audit_keep_rows,))

    def audit_rows(self, limit: int = 100) -> list[AuditRecord]:
        """The latest audit rows, newest first."""
        rows = self.read(
            "SELECT id, at, actor, source, command, target, outcome, detail FROM audit "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [_from_row(AuditRecord, row) for row in rows]

    # -- plumbing for the other stores of state/ --------------------------------

    def write(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        """Run ``sql`` once per row of ``rows`` in one transaction."""
        with self.transaction() as conn:
            conn.executemany(sql, rows)

    def read(
        self, sql: str, args: tuple[object, ...] | Mapping[str, object] = ()
    ) -> list[sqlite3.Row]:
        """Rows of one query."""
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error).

        For the stores that keep their tables in this database (their schema is a
        migration of ``_MIGRATIONS``): several statements that must land together.
        """
        with self._lock, _transaction(self._conn):
            yield self._conn


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error (autocommit connection)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _unusable(path: Path, exc: sqlite3.DatabaseError) -> LedgerError:
    """The error for a ledger sqlite cannot use; for a damaged file, what to do about it."""
    if exc.sqlite_errorname not in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
        return LedgerError(path, f"cannot be used: {exc}")
    aside = path.with_name(path.name + ".corrupt")
    return LedgerError(
        path,
        f"cannot be used: {exc}; move it aside (mv {str(path)!r} {str(aside)!r}) and start"
        " dsup again with a new one: the processes its last run left behind will then not be"
        " found and ended (look for them with ps), and its run history and audit are left in"
        " the old file",
    )


def _migrate(path: Path, conn: sqlite3.Connection) -> None:
    """Bring the schema to ``SCHEMA_VERSION``, one transaction per step."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise LedgerError(
            path,
            f"schema version {version} is newer than this dsup knows ({SCHEMA_VERSION}); "
            "upgrade dsup or use another state_dir",
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        with _transaction(conn):
            for statement in _MIGRATIONS[target - 1].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
        logger.info("ledger %s: schema migrated to version %d", path, target)


def _run_record(row: sqlite3.Row) -> RunRecord:
    return _from_row(RunRecord, row, is_settled=bool(row["settled"]))


_Record = TypeVar("_Record", RunRecord, LeftoverProcess, AuditRecord)


def _from_row(cls: type[_Record], row: sqlite3.Row, **computed: object) -> _Record:
    """A record whose fields are the row's columns of the same name, except ``computed``."""
    values = {f.name: row[f.name] for f in fields(cls) if f.name not in computed}
    values.update(computed)
    return cls(**values)
