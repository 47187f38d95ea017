"""The ledger: dsup's durable memory in ``state_dir/ledger.sqlite3`` (runs, pids, audit).

Synchronous and thread-safe (one connection behind a lock). WAL with ``synchronous=NORMAL``: a
commit survives dsup's own death, even by SIGKILL, once the call returns.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import sqlite3
import threading
import time
from dataclasses import fields
from typing import TYPE_CHECKING, Self, TypeVar

from supervisor.errors import LedgerError
from supervisor.state.records import (
    AuditRecord,
    AuditSource,
    LeftoverProcess,
    ProcIdent,
    RunRecord,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from pathlib import Path
    from types import TracebackType

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

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
    # The outbox (state/outbox.py): what is bound for Discord, written before it is sent.
    """
    CREATE TABLE outbox (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        channel     INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        content     TEXT NOT NULL,
        target      INTEGER,
        reply_to    INTEGER,
        counts      TEXT NOT NULL DEFAULT '',
        created_at  REAL NOT NULL,
        until_at    REAL NOT NULL,
        status      TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'abandoned')),
        attempts    INTEGER NOT NULL DEFAULT 0,
        first_try_at REAL,
        next_try_at REAL NOT NULL DEFAULT 0,
        last_error  TEXT NOT NULL DEFAULT '',
        message_id  INTEGER,
        sent_at     REAL
    );
    CREATE INDEX outbox_pending ON outbox (channel, id) WHERE status = 'pending';
    CREATE TABLE outbox_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO outbox_meta (key, value) VALUES ('salt', lower(hex(randomblob(5))));
    """,
    # The Discord bridge's slash commands: the digest of what was last registered.
    """
    CREATE TABLE discord_command_sync (
        guild_id  INTEGER PRIMARY KEY,
        digest    TEXT NOT NULL,
        synced_at REAL NOT NULL
    );
    """,
    # The Discord status board (state/board.py): which message to edit, per channel.
    """
    CREATE TABLE discord_board (
        channel_id INTEGER PRIMARY KEY,
        message_id INTEGER NOT NULL,
        posted_at  REAL NOT NULL
    );
    """,
    # Processes the subreaper adopted that no run could claim (a daemon that left
    # its tree, its session and its markers): ended by a sweep, or the next start.
    """
    CREATE TABLE adopted (
        pid         INTEGER NOT NULL,
        create_time REAL NOT NULL,
        PRIMARY KEY (pid, create_time)
    );
    """,
    # The task queue (supervisor/tasks/store.py).
    """
    CREATE TABLE tasks (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        program      TEXT NOT NULL,
        text         TEXT NOT NULL,
        source       TEXT NOT NULL,
        author       TEXT NOT NULL,
        source_key   TEXT UNIQUE,
        max_attempts INTEGER NOT NULL,
        state        TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        created_at   REAL NOT NULL,
        started_at   REAL,
        ended_at     REAL,
        owner        TEXT,
        lease_until  REAL,
        cancel_by    TEXT,
        result       TEXT NOT NULL DEFAULT '',
        reason       TEXT NOT NULL DEFAULT '',
        exit_code    INTEGER,
        exit_signal  INTEGER
    );
    CREATE INDEX tasks_by_state ON tasks (state, program, id);
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
    # Tasks answered in a chat (supervisor/tasks/store.py), and how far the bridge
    # has read each task channel (state/channel_cursor.py).
    """
    ALTER TABLE tasks ADD COLUMN reply_channel INTEGER;
    ALTER TABLE tasks ADD COLUMN reply_to INTEGER;
    ALTER TABLE tasks ADD COLUMN replied_at REAL;
    CREATE INDEX tasks_unreplied ON tasks (id)
        WHERE reply_channel IS NOT NULL AND replied_at IS NULL;
    CREATE TABLE channel_cursor (
        channel    INTEGER PRIMARY KEY,
        message_id INTEGER NOT NULL
    );
    """,
    # question_posts: the Discord message of each worker question, edited when it closes.
    """
    CREATE TABLE discord_questions (
        question_id INTEGER PRIMARY KEY,
        channel_id  INTEGER NOT NULL,
        message_id  INTEGER NOT NULL,
        settled     INTEGER NOT NULL DEFAULT 0
    );
    """,
    # Embeds and files of an outbox row (a worker's result): JSON, "" for none.
    """
    ALTER TABLE outbox ADD COLUMN attach TEXT NOT NULL DEFAULT '';
    """,
    # Markers of outbox rows (state/outbox.py), pruned with their rows; workers'
    # questions posted through the outbox, their messages marked there (the
    # messages of questions not yet settled become sent rows of the outbox).
    """
    ALTER TABLE outbox_meta ADD COLUMN row_id INTEGER;
    CREATE INDEX outbox_meta_row ON outbox_meta (row_id) WHERE row_id IS NOT NULL;
    UPDATE outbox_meta SET row_id = (SELECT coalesce(max(id), 0) FROM outbox)
        WHERE key LIKE 'task-%:%';
    INSERT INTO outbox (channel, kind, content, created_at, until_at, status, message_id,
        sent_at)
        SELECT channel_id, 'question', '', 0, 0, 'sent', message_id, 0
        FROM discord_questions WHERE settled = 0 ORDER BY question_id;
    INSERT OR IGNORE INTO outbox_meta (key, value, row_id)
        SELECT 'question:' || d.question_id, o.id, o.id FROM discord_questions d
        JOIN outbox o ON o.kind = 'question' AND o.status = 'sent'
            AND o.channel = d.channel_id AND o.message_id = d.message_id
        WHERE d.settled = 0;
    DROP TABLE discord_questions;
    """,
    # Files an outbox row sends (a command's answer by mention): the name of the row's
    # own folder in state_dir/outbox-files (state/outbox_files.py), "" for none.
    """
    ALTER TABLE outbox ADD COLUMN files TEXT NOT NULL DEFAULT '';
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)

_RUN_COLUMNS = (
    "run_id, process, program, pid, create_time, started_at, ended_at, exit_code, "
    "exit_signal, settled"
)


AUDIT_KEEP_ROWS = 100_000
"""Audit rows kept by default: a script polling ``status`` every second adds
86,400 a day, so the oldest rows are dropped past this many."""
RUNS_KEEP = 10_000
"""Runs kept by default (history for ``recent_runs``); only settled runs are dropped."""
DEFERRED_MAX = 10_000
"""Records kept in memory while the disk refuses them; later ones are dropped and counted."""


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
        # Audit rows written so far: a reader of new rows asks the table only when it moved.
        self.audit_writes = 0
        self._conn = conn
        self._lock = threading.Lock()
        self._deferred: collections.deque[tuple[str, Callable[[sqlite3.Connection], object]]] = (
            collections.deque()
        )
        self._dropped: dict[str, int] = {}
        self._failing = False
        self._refusal: sqlite3.OperationalError | None = None  # why the last replay stopped
        self._reserved: dict[str, int] = {}

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
        _refuse_links(path)
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

    def release_memory(self) -> None:
        """Let sqlite free the pages it caches (``PRAGMA shrink_memory``): call it at rest.

        A sweep or a status reads a row of every run through the connection's page
        cache, which keeps them (up to 2 MiB) while the node rests; a later read finds
        them in the system's file cache.
        """
        with self._lock:
            self._conn.execute("PRAGMA shrink_memory")

    def close(self) -> None:
        """Close the connection (idempotent), saying what could not be recorded."""
        with self._lock:
            with contextlib.suppress(sqlite3.ProgrammingError):  # already closed
                if not self._replay():
                    for what, _ in self._deferred:
                        self._dropped[what] = self._dropped.get(what, 0) + 1
                    self._deferred.clear()
                    logger.error(
                        "ledger %s: closed before the disk took every record%s",
                        self.path,
                        self._said_lost(),
                    )
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

        def record(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "INSERT INTO runs (run_id, process, program, pid, create_time, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, process, program, pid, create_time, started_at),
            )
            newest = cursor.lastrowid or 0
            conn.execute(
                "DELETE FROM runs WHERE settled = 1 AND rowid <= ?", (newest - self.runs_keep,)
            )

        self.record("run start", record)

    def record_run_exit(
        self, *, run_id: str, exit_code: int | None, exit_signal: int | None, ended_at: float
    ) -> None:
        """Record how a run's main process ended."""
        self._record_rows(
            "run exit",
            "UPDATE runs SET ended_at = ?, exit_code = ?, exit_signal = ? WHERE run_id = ?",
            [(ended_at, exit_code, exit_signal, run_id)],
        )

    def record_descendants(self, run_id: str, procs: Sequence[ProcIdent]) -> None:
        """Remember processes seen in a run's tree.

        Already known ones are ignored, and so are all of them if the run was
        never recorded (nothing could find them by run later anyway).
        """
        self._record_rows(
            "run descendants",
            "INSERT OR IGNORE INTO run_procs (run_id, pid, create_time) "
            "SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = ?)",
            [(run_id, p.pid, p.create_time, run_id) for p in procs],
        )

    def forget_runs(self, run_ids: Iterable[str]) -> None:
        """Mark runs as settled: nothing of them is alive; their history stays."""
        ids = [(run_id,) for run_id in run_ids]

        def record(conn: sqlite3.Connection) -> None:
            conn.executemany("UPDATE runs SET settled = 1 WHERE run_id = ?", ids)
            conn.executemany("DELETE FROM run_procs WHERE run_id = ?", ids)

        self.record("settled runs", record)

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

    # -- adopted orphans ------------------------------------------------------

    def record_adopted(self, procs: Sequence[ProcIdent]) -> None:
        """Remember adopted processes no run claims, so a next start can end them."""
        self._record_rows(
            "adopted processes",
            "INSERT OR IGNORE INTO adopted (pid, create_time) VALUES (?, ?)",
            [(p.pid, p.create_time) for p in procs],
        )

    def adopted_processes(self) -> list[ProcIdent]:
        """Adopted processes recorded and not yet forgotten."""
        rows = self.read("SELECT pid, create_time FROM adopted ORDER BY pid", ())
        return [ProcIdent(row["pid"], row["create_time"]) for row in rows]

    def forget_adopted(self, procs: Iterable[ProcIdent]) -> None:
        """Forget adopted processes that are gone."""
        self._record_rows(
            "ended adopted processes",
            "DELETE FROM adopted WHERE pid = ? AND create_time = ?",
            [(p.pid, p.create_time) for p in procs],
        )

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

        def record(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "INSERT INTO audit (at, actor, source, command, target, outcome, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            newest = cursor.lastrowid or 0
            conn.execute("DELETE FROM audit WHERE id <= ?", (newest - self.audit_keep_rows,))
            self.audit_writes += 1  # under the ledger's lock, when the row is written

        self.record("audit row", record)

    def audit_rows(self, limit: int = 100) -> list[AuditRecord]:
        """The latest audit rows, newest first."""
        rows = self.read(
            "SELECT id, at, actor, source, command, target, outcome, detail FROM audit "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [_from_row(AuditRecord, row) for row in rows]

    def audit_since(self, after_id: int, limit: int = 100) -> list[AuditRecord]:
        """Audit rows newer than row ``after_id``, oldest first (for the audit channel)."""
        rows = self.read(
            "SELECT id, at, actor, source, command, target, outcome, detail FROM audit "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [_from_row(AuditRecord, row) for row in rows]

    def audit_newest_id(self) -> int:
        """The id of the newest audit row (0 when there is none)."""
        (row,) = self.read("SELECT coalesce(max(id), 0) AS id FROM audit")
        return int(row["id"])

    # -- best effort: what a full disk cannot take now is written later ---------

    @property
    def unrecorded(self) -> int:
        """Records waiting in memory for the disk to take them."""
        return len(self._deferred)

    def retry_deferred(self) -> bool:
        """Write what a full disk refused, if it takes it now; True when nothing waits."""
        with self._lock:
            return self._replay()

    def _record_rows(self, what: str, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        def record(conn: sqlite3.Connection) -> None:
            conn.executemany(sql, rows)

        self.record(what, record)

    def record(
        self,
        what: str,
        record: Callable[[sqlite3.Connection], _T],
        *,
        on_drop: Callable[[], object] | None = None,
    ) -> _T | None:
        """Write one record in its own transaction, best effort when there is no room.

        A record the disk refuses (full, failing, locked too long) is kept in
        memory, in order, and written before the next one once the disk takes
        it again; a command's or a process's fate never hangs on it. The first
        refusal is logged; when writing works again the count written late is;
        records beyond ``DEFERRED_MAX`` are dropped and their loss said then
        (or at :meth:`close`). The other stores of ``state/`` write through here
        what must not be lost; ``record`` must then be safe to run later, after
        the records written before it.

        Args:
            what: what the record is, for the log (``"audit row"``).
            record: writes it, given the connection inside a transaction.
            on_drop: called (under the ledger's lock, before this returns) when
                the record is dropped rather than kept: what the caller keeps in
                memory about it must go with it.

        Returns:
            What ``record`` returned, or None when it was kept for later (or dropped).
        """
        with self._lock:
            return self._record_locked(what, record, on_drop)

    def record_new(
        self,
        table: str,
        what: str,
        record: Callable[[sqlite3.Connection, int], _T],
        *,
        on_drop: Callable[[], object] | None = None,
        count: int = 1,
    ) -> tuple[int, _T | None]:
        """Like :meth:`record`, for a record that may insert rows of ``table`` (AUTOINCREMENT).

        The row's id is chosen first and given to ``record``, so it is known at
        once even when the write waits for the disk; ids are chosen and records
        written (or kept) in one step, so ids grow in the order rows are written.
        The id of a dropped record is never given again.

        Args:
            table: the table whose ids are chosen.
            what: as :meth:`record`'s.
            record: writes it, given the connection and the (first) id.
            on_drop: as :meth:`record`'s.
            count: ids to choose, for ``count`` rows in one record: ``record``
                gets the first, the others follow it.

        Returns:
            The (first) id chosen, and what ``record`` returned (None when it was kept).
        """
        with self._lock:
            last = self._reserved.get(table)
            if last is None:
                (seq,) = self._conn.execute(
                    "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = ?", (table,)
                ).fetchone()
                (top,) = self._conn.execute(
                    f"SELECT coalesce(max(rowid), 0) FROM {table}"
                ).fetchone()
                last = max(int(seq), int(top))
            row_id = last + 1
            self._reserved[table] = last + count
            return row_id, self._record_locked(what, lambda conn: record(conn, row_id), on_drop)

    def _record_locked(
        self,
        what: str,
        record: Callable[[sqlite3.Connection], _T],
        on_drop: Callable[[], object] | None,
    ) -> _T | None:
        if self._replay():
            try:
                with _transaction(self._conn):
                    return record(self._conn)
            except sqlite3.OperationalError as exc:
                if not is_no_room(exc):
                    raise
                self._refused(exc)
        if not self._defer(what, record) and on_drop is not None:
            on_drop()
        return None

    def reserved(self, table: str) -> int:
        """The last id :meth:`record_new` chose for ``table`` (0 before the first)."""
        with self._lock:
            return self._reserved.get(table, 0)

    def _replay(self) -> bool:
        """Write the deferred records in order; True when none is left (lock held)."""
        late = 0
        while self._deferred:
            what, record = self._deferred[0]
            try:
                with _transaction(self._conn):
                    record(self._conn)
            except sqlite3.OperationalError as exc:
                if is_no_room(exc):
                    self._refusal = exc
                    return False
                logger.error("ledger %s: a late %s cannot be written: %s", self.path, what, exc)
            else:
                late += 1
            self._deferred.popleft()
        if late or self._dropped:
            logger.warning(
                "ledger %s works again: %d records written late%s",
                self.path,
                late,
                self._said_lost(),
            )
        self._failing = False
        return True

    def _refused(self, exc: sqlite3.OperationalError) -> None:
        if not self._failing:
            logger.error(
                "ledger %s cannot be written (%s): run history, audit and messages for"
                " Discord are kept in memory (up to %d records) and written when it can be",
                self.path,
                exc,
                DEFERRED_MAX,
            )
        self._failing = True

    def _defer(self, what: str, record: Callable[[sqlite3.Connection], object]) -> bool:
        """Keep ``record`` for later; False when it is dropped (too many wait)."""
        if len(self._deferred) < DEFERRED_MAX:
            self._deferred.append((what, record))
            return True
        self._dropped[what] = self._dropped.get(what, 0) + 1
        return False

    def _said_lost(self) -> str:
        """``", lost: N audit rows, ..."`` for the records dropped so far (then forgotten)."""
        if not self._dropped:
            return ""
        lost = ", ".join(f"{n} {what}" for what, n in sorted(self._dropped.items()))
        self._dropped.clear()
        return f"; lost (no room to keep them): {lost}"

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
        migration of ``_MIGRATIONS``): several statements that must land together,
        now or not at all. The records :meth:`record` keeps waiting are written
        first, so a transaction never overtakes them.

        Raises:
            sqlite3.OperationalError: the disk refuses it (:func:`is_no_room`), or
                refuses the records waiting before it.
        """
        with self._lock:
            if not self._replay():
                raise _refused_again(self._refusal)
            with _transaction(self._conn):
                yield self._conn


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error (autocommit connection)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")  # may fail too (a full disk): then roll back as well
    except BaseException:
        if conn.in_transaction:  # sqlite may have rolled back by itself
            conn.execute("ROLLBACK")
        raise


def _refused_again(refusal: sqlite3.OperationalError | None) -> sqlite3.OperationalError:
    """A fresh error like ``refusal`` (the disk's last refusal), for a write behind it."""
    refused = sqlite3.OperationalError(str(refusal or "earlier writes wait for the disk"))
    refused.sqlite_errorcode = getattr(refusal, "sqlite_errorcode", sqlite3.SQLITE_FULL)
    refused.sqlite_errorname = getattr(refusal, "sqlite_errorname", "SQLITE_FULL")
    return refused


def _refuse_links(path: Path) -> None:
    """Refuse a ledger (or its WAL files) that is a symbolic link.

    sqlite follows links; one planted in state_dir would make dsup write its
    database wherever it points.
    """
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        if path.with_name(name).is_symlink():
            raise LedgerError(
                path, f"{name} is a symbolic link; dsup opens no file of state_dir through one"
            )


_NO_ROOM = frozenset({"SQLITE_FULL", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_READONLY"})


def is_no_room(exc: sqlite3.OperationalError) -> bool:
    """True for a write the disk refused now and may take later (full, I/O, locked)."""
    name = exc.sqlite_errorname or ""
    return name in _NO_ROOM or name.startswith(("SQLITE_IOERR", "SQLITE_FULL"))


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
