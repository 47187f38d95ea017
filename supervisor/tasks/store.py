"""The task store: one small interface (submit, claim, renew, complete, requeue expired).

The queue and the command surface see only :class:`TaskStore`, so a database shared by
several nodes can replace :class:`SqliteTaskStore` without touching them.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from supervisor.errors import TaskBacklogFull, TaskFinished, UnknownTask
from supervisor.state.ledger import is_no_room
from supervisor.tasks.records import TaskOutcome, TaskRecord, TaskState

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Mapping

    from supervisor.state.ledger import Ledger
    from supervisor.tasks.records import NewTask

logger = logging.getLogger(__name__)

TASKS_KEEP = 10_000
"""Finished tasks kept (for ``dsup ctl tasks`` and late waiters); older ones are dropped."""

_COLUMNS = (
    "id, program, text, source, author, source_key, max_attempts, state, attempts, "
    "created_at, started_at, ended_at, owner, lease_until, cancel_by, result, reason, "
    "exit_code, exit_signal, reply_channel, reply_to, replied_at"
)
_QUEUED, _RUNNING = TaskState.QUEUED.value, TaskState.RUNNING.value


class TaskStore(Protocol):
    """Where tasks live. Every method is atomic and synchronous (call it in a thread).

    A claim belongs to an *attempt*: ``claim`` counts one, and ``renew``,
    ``complete`` and ``release`` only act while that attempt still holds the task,
    so a node that lost its claim (its lease expired and another node took the
    task) cannot overwrite the newer attempt's outcome.

    While the store cannot be written (a full disk), ``submit`` raises, ``claim``
    and ``requeue_expired`` do nothing (tasks wait), and what an attempt or an
    operator did (``renew``, ``complete``, ``release``, ``cancel``,
    ``mark_replied``) is kept and written once it can be: the records returned,
    and ``get`` and ``recent``, show it meanwhile.
    """

    def submit(self, task: NewTask, *, backlog: int, now: float) -> tuple[TaskRecord, bool]:
        """Record a new QUEUED task; with a known ``source_key``, the task already recorded.

        Returns:
            The task and True if it is new.

        Raises:
            TaskBacklogFull: ``backlog`` tasks of the program are already QUEUED.
        """
        ...

    def claim(
        self, program: str, *, owner: str, lease_until: float, now: float
    ) -> TaskRecord | None:
        """Take the oldest QUEUED task of ``program`` for ``owner``: RUNNING, one attempt more.

        None when there is none, or while the store cannot record a claim.
        """
        ...

    def renew(self, task_id: int, attempt: int, *, lease_until: float) -> TaskRecord | None:
        """Extend an attempt's claim; None when the attempt no longer holds the task.

        The record returned carries ``cancel_by`` when an operator asked to cancel it.
        """
        ...

    def complete(
        self, task_id: int, attempt: int, outcome: TaskOutcome, *, now: float
    ) -> TaskRecord | None:
        """Record an attempt's outcome (final); None when the attempt no longer holds it."""
        ...

    def release(self, task_id: int, attempt: int, *, reason: str) -> None:
        """Give a task back (QUEUED) without counting the attempt: its node is shutting down."""
        ...

    def requeue_expired(self, *, now: float, dead_owners: Collection[str] = ()) -> list[TaskRecord]:
        """Queue again the RUNNING tasks whose claim expired or whose owner is dead.

        A task that has had ``max_attempts`` attempts fails instead.

        Returns:
            The tasks changed, as they are now.
        """
        ...

    def cancel(self, task_id: int, *, by: str, now: float) -> TaskRecord:
        """Cancel a QUEUED task at once; mark a RUNNING one for its owner to stop.

        Raises:
            UnknownTask: no such task.
            TaskFinished: it has already ended.
        """
        ...

    def get(self, task_id: int) -> TaskRecord:
        """One task.

        Raises:
            UnknownTask: no such task.
        """
        ...

    def recent(self, limit: int) -> list[TaskRecord]:
        """The latest tasks, newest first."""
        ...

    def is_submitted(self, source_key: str) -> bool:
        """Whether a task was submitted with ``source_key`` (and not dropped since)."""
        ...

    def counts(self) -> Mapping[str, Mapping[TaskState, int]]:
        """QUEUED and RUNNING tasks per program."""
        ...

    def unreplied(self, limit: int) -> list[TaskRecord]:
        """Ended tasks with a ``reply_channel`` whose answer is not queued yet, oldest first."""
        ...

    def mark_replied(self, task_id: int, *, now: float) -> None:
        """Note that a task's answer is queued for its chat (on a full disk, later)."""
        ...


class SqliteTaskStore:
    """The task store of one node: the ``tasks`` table of its ledger.

    Claims, submissions and requeues are written now or not at all; the rest goes
    through ``Ledger.record`` (kept in memory, in order, while the disk is full),
    and the tasks as those waiting writes leave them are kept here meanwhile.
    """

    def __init__(self, ledger: Ledger, *, keep: int = TASKS_KEEP) -> None:
        self._ledger = ledger
        self._keep = keep
        self._lock = threading.Lock()
        self._waiting: dict[int, TaskRecord] = {}  # as writes waiting for the disk leave them
        self._is_held = False

    def submit(self, task: NewTask, *, backlog: int, now: float) -> tuple[TaskRecord, bool]:
        with self._transaction() as conn:
            if task.source_key is not None:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM tasks WHERE source_key = ?", (task.source_key,)
                ).fetchone()
                if row is not None:
                    return _record(row), False
            (waiting,) = conn.execute(
                "SELECT COUNT(*) FROM tasks WHERE state = ? AND program = ?",
                (_QUEUED, task.program),
            ).fetchone()
            if waiting >= backlog:
                raise TaskBacklogFull(task.program, backlog)
            cursor = conn.execute(
                "INSERT INTO tasks (program, text, source, author, source_key, max_attempts, "
                "state, created_at, reply_channel, reply_to) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    task.program,
                    task.text,
                    task.source,
                    task.author,
                    task.source_key,
                    task.max_attempts,
                    _QUEUED,
                    now,
                    task.reply_channel,
                    task.reply_to,
                ),
            )
            task_id = cursor.lastrowid or 0
            conn.execute(
                "DELETE FROM tasks WHERE id <= ? AND state NOT IN (?, ?)",
                (task_id - self._keep, _QUEUED, _RUNNING),
            )
            return _one(conn, task_id), True

    def claim(
        self, program: str, *, owner: str, lease_until: float, now: float
    ) -> TaskRecord | None:
        try:
            with self._transaction() as conn:
                row = conn.execute(
                    "SELECT id FROM tasks WHERE state = ? AND program = ? ORDER BY id LIMIT 1",
                    (_QUEUED, program),
                ).fetchone()
                if row is None:
                    return None
                conn.execute(
                    "UPDATE tasks SET state = ?, attempts = attempts + 1, owner = ?, "
                    "lease_until = ?, started_at = ?, cancel_by = NULL WHERE id = ?",
                    (_RUNNING, owner, lease_until, now, row[0]),
                )
                claimed = _one(conn, row[0])
        except sqlite3.OperationalError as exc:
            self._hold(exc)
            return None
        self._resume()
        return claimed

    def renew(self, task_id: int, attempt: int, *, lease_until: float) -> TaskRecord | None:
        def record(conn: sqlite3.Connection) -> list[TaskRecord]:
            cursor = conn.execute(
                "UPDATE tasks SET lease_until = ? WHERE id = ? AND attempts = ? AND state = ?",
                (lease_until, task_id, attempt, _RUNNING),
            )
            return [_one(conn, task_id)] if cursor.rowcount else []

        return self._write(
            "task lease",
            task_id,
            record,
            lambda task: replace(task, lease_until=lease_until) if _holds(task, attempt) else None,
        )

    def complete(
        self, task_id: int, attempt: int, outcome: TaskOutcome, *, now: float
    ) -> TaskRecord | None:
        def record(conn: sqlite3.Connection) -> list[TaskRecord]:
            cursor = conn.execute(
                "UPDATE tasks SET state = ?, result = ?, reason = ?, exit_code = ?, "
                "exit_signal = ?, ended_at = ?, owner = NULL, lease_until = NULL "
                "WHERE id = ? AND attempts = ? AND state = ?",
                (
                    outcome.state.value,
                    outcome.result,
                    outcome.reason,
                    outcome.exit_code,
                    outcome.exit_signal,
                    now,
                    task_id,
                    attempt,
                    _RUNNING,
                ),
            )
            return [_one(conn, task_id)] if cursor.rowcount else []

        return self._write(
            "task's end",
            task_id,
            record,
            lambda task: _ended(task, outcome, now) if _holds(task, attempt) else None,
        )

    def release(self, task_id: int, attempt: int, *, reason: str) -> None:
        def record(conn: sqlite3.Connection) -> list[TaskRecord]:
            conn.execute(
                "UPDATE tasks SET state = ?, attempts = attempts - 1, owner = NULL, "
                "lease_until = NULL, reason = ? WHERE id = ? AND attempts = ? AND state = ?",
                (_QUEUED, reason, task_id, attempt, _RUNNING),
            )
            return []

        def project(task: TaskRecord) -> TaskRecord | None:
            if not _holds(task, attempt):
                return None
            return replace(
                task,
                state=TaskState.QUEUED,
                attempts=attempt - 1,
                owner=None,
                lease_until=None,
                reason=reason,
            )

        self._write("task given back", task_id, record, project)

    def requeue_expired(self, *, now: float, dead_owners: Collection[str] = ()) -> list[TaskRecord]:
        try:
            return self._requeue_expired(now, tuple(dead_owners))
        except sqlite3.OperationalError as exc:
            self._hold(exc)
            return []

    def _requeue_expired(self, now: float, owners: tuple[str, ...]) -> list[TaskRecord]:
        marks = ", ".join("?" * len(owners)) or "NULL"
        with self._transaction() as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM tasks WHERE state = ? AND "
                    f"(lease_until < ? OR owner IN ({marks})) ORDER BY id",
                    (_RUNNING, now, *owners),
                )
            ]
            for task_id in ids:
                conn.execute(
                    "UPDATE tasks SET "
                    "state = CASE WHEN attempts >= max_attempts THEN ? ELSE ? END, "
                    "ended_at = CASE WHEN attempts >= max_attempts THEN ? END, "
                    "reason = CASE WHEN attempts >= max_attempts "
                    "THEN 'its node stopped during each of its ' || attempts || "
                    "' attempts (task_max_attempts = ' || max_attempts || ')' "
                    "ELSE 'queued again: its node stopped during attempt ' || attempts END, "
                    "owner = NULL, lease_until = NULL WHERE id = ?",
                    (TaskState.FAILED.value, _QUEUED, now, task_id),
                )
            return [_one(conn, task_id) for task_id in ids]

    def cancel(self, task_id: int, *, by: str, now: float) -> TaskRecord:
        task = self.get(task_id)
        if task.state.is_final:
            raise TaskFinished(task_id, task.state.value)
        reason = f"cancelled by {by}"

        def record(conn: sqlite3.Connection) -> list[TaskRecord]:
            # Conditional, so that it stays right when written later, or after another node.
            conn.execute(
                "UPDATE tasks SET state = ?, reason = ?, ended_at = ? WHERE id = ? AND state = ?",
                (TaskState.CANCELLED.value, reason, now, task_id, _QUEUED),
            )
            conn.execute(
                "UPDATE tasks SET cancel_by = ? WHERE id = ? AND state = ?",
                (by, task_id, _RUNNING),
            )
            row = conn.execute(f"SELECT {_COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
            return [_record(row)] if row is not None else []  # written late: it may be gone

        def project(task: TaskRecord) -> TaskRecord | None:
            if task.state is TaskState.QUEUED:
                return replace(task, state=TaskState.CANCELLED, reason=reason, ended_at=now)
            return replace(task, cancel_by=by) if task.state is TaskState.RUNNING else None

        return self._write("task cancel", task_id, record, project) or self.get(task_id)

    def get(self, task_id: int) -> TaskRecord:
        with self._lock:
            waiting = self._current().get(task_id)
        if waiting is not None:
            return waiting
        rows = self._ledger.read(f"SELECT {_COLUMNS} FROM tasks WHERE id = ?", (task_id,))
        if not rows:
            raise UnknownTask(task_id)
        return _record(rows[0])

    def recent(self, limit: int) -> list[TaskRecord]:
        rows = self._ledger.read(f"SELECT {_COLUMNS} FROM tasks ORDER BY id DESC LIMIT ?", (limit,))
        with self._lock:
            waiting = self._current()
            return [waiting.get(row["id"]) or _record(row) for row in rows]

    def is_submitted(self, source_key: str) -> bool:
        # Submissions are written now or never: the table has every one.
        rows = self._ledger.read("SELECT 1 FROM tasks WHERE source_key = ?", (source_key,))
        return bool(rows)

    def counts(self) -> Mapping[str, Mapping[TaskState, int]]:
        rows = self._ledger.read(
            "SELECT program, state, COUNT(*) FROM tasks WHERE state IN (?, ?) "
            "GROUP BY program, state",
            (_QUEUED, _RUNNING),
        )
        found: dict[str, dict[TaskState, int]] = {}
        for program, state, n in rows:
            found.setdefault(program, {})[TaskState(state)] = n
        return found

    def unreplied(self, limit: int) -> list[TaskRecord]:
        rows = self._ledger.read(
            f"SELECT {_COLUMNS} FROM tasks WHERE reply_channel IS NOT NULL "
            "AND replied_at IS NULL AND state NOT IN (?, ?) ORDER BY id LIMIT ?",
            (_QUEUED, _RUNNING, limit),
        )
        with self._lock:
            waiting = self._current()
        found = {row["id"]: waiting.get(row["id"]) or _record(row) for row in rows}
        found.update((t.id, t) for t in waiting.values() if t.reply_channel is not None)
        due = [t for t in found.values() if t.state.is_final and t.replied_at is None]
        return sorted(due, key=lambda t: t.id)[:limit]

    def mark_replied(self, task_id: int, *, now: float) -> None:
        def record(conn: sqlite3.Connection) -> list[TaskRecord]:
            conn.execute("UPDATE tasks SET replied_at = ? WHERE id = ?", (now, task_id))
            return []

        # On a full disk it waits in the ledger's memory, after the answer's outbox row
        # (whose marker says it was queued), and is written with it.
        self._write("task replied", task_id, record, lambda task: replace(task, replied_at=now))

    # -- a full disk ---------------------------------------------------------------

    def _write(
        self,
        what: str,
        task_id: int,
        record: Callable[[sqlite3.Connection], list[TaskRecord]],
        project: Callable[[TaskRecord], TaskRecord | None],
    ) -> TaskRecord | None:
        """Write through ``Ledger.record``; while it waits, the task as ``project`` leaves it.

        ``record`` returns the task as written ([] when the write changed nothing);
        ``project`` the same from the task as it is now (None: nothing changes).
        """
        dropped: list[bool] = []
        with self._lock:  # one write and its projection at a time: in the ledger's order
            written = self._ledger.record(what, record, on_drop=lambda: dropped.append(True))
            if written is not None:  # the writes kept before it are in the table too
                self._waiting.clear()
                return written[0] if written else None
            if dropped:  # lost (said by the ledger): nothing may claim it happened
                return None
            waiting = self._current()
            task = waiting.get(task_id)
            if task is None:
                rows = self._ledger.read(f"SELECT {_COLUMNS} FROM tasks WHERE id = ?", (task_id,))
                task = _record(rows[0]) if rows else None
            projected = project(task) if task is not None else None
            if projected is not None:
                waiting[task_id] = projected
            return projected

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A transaction written now or never (``Ledger.transaction``)."""
        with self._lock, self._ledger.transaction() as conn:
            self._waiting.clear()  # the writes kept were written first: the table has them
            yield conn

    def _current(self) -> dict[int, TaskRecord]:
        """The tasks whose writes wait; forgotten once nothing waits (lock held)."""
        if self._waiting and not self._ledger.unrecorded:
            self._waiting.clear()
        return self._waiting

    def _hold(self, exc: sqlite3.OperationalError) -> None:
        if not is_no_room(exc):
            raise exc
        if not self._is_held:
            self._is_held = True
            logger.error("tasks: none is started or queued again until the ledger takes writes")

    def _resume(self) -> None:
        if self._is_held:
            self._is_held = False
            logger.warning("tasks: the ledger takes writes again; queued tasks start")


def _ended(task: TaskRecord, outcome: TaskOutcome, now: float) -> TaskRecord:
    """``task`` as ``complete`` leaves it."""
    return replace(
        task,
        state=outcome.state,
        result=outcome.result,
        reason=outcome.reason,
        exit_code=outcome.exit_code,
        exit_signal=outcome.exit_signal,
        ended_at=now,
        owner=None,
        lease_until=None,
    )


def _holds(task: TaskRecord, attempt: int) -> bool:
    """True while ``attempt`` is the one running ``task``."""
    return task.state is TaskState.RUNNING and task.attempts == attempt


def _one(conn: sqlite3.Connection, task_id: int) -> TaskRecord:
    row = conn.execute(f"SELECT {_COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
    if row is None:
        raise UnknownTask(task_id)
    return _record(row)


def _record(row: sqlite3.Row) -> TaskRecord:
    values = {key: row[key] for key in row.keys()}  # noqa: SIM118 - a Row is no mapping
    values["state"] = TaskState(values["state"])
    return TaskRecord(**values)
