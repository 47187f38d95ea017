"""What workers reported and asked, kept in the ledger: results and questions.

They outlive their runs; a question still open when dsup starts lost its asker with the last
dsup, and is closed as ``gone``. Writes go through ``Ledger.record``: a full disk delays them
(in memory, in order), never fails the worker's message.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from supervisor.events import WorkerResult

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Sequence

    from supervisor.events import Question, QuestionStatus
    from supervisor.state.ledger import Ledger

RESULTS_KEEP = 10_000
"""Results kept; the oldest are dropped past this many."""
QUESTIONS_KEEP = 10_000
"""Closed questions kept; open ones are never dropped."""


class WorkerStore:
    """The results and questions tables of one ledger.

    Args:
        ledger: the open ledger (its migrations made the tables).
    """

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def add_results(self, results: Sequence[WorkerResult]) -> list[WorkerResult]:
        """Record results (their ``id`` is ignored); return them with their ids.

        On a full disk they get their ids at once and are written when it takes them.
        """
        if not results:
            return []
        first, _ = self._ledger.record_new(
            "worker_results", "worker results", _insert(results), count=len(results)
        )
        return [replace(r, id=first + i) for i, r in enumerate(results)]

    def recent_results(self, processes: Sequence[str], limit: int) -> list[WorkerResult]:
        """The latest ``limit`` results of ``processes``, newest first."""
        marks = ", ".join("?" * len(processes))
        rows = self._ledger.read(
            "SELECT id, at, process, program, run_id, text, data, files FROM worker_results "
            f"WHERE process IN ({marks}) ORDER BY id DESC LIMIT ?",
            (*processes, limit),
        )
        return [
            WorkerResult(
                id=row["id"],
                process=row["process"],
                program=row["program"],
                run_id=row["run_id"],
                text=row["text"],
                data=row["data"],
                files=tuple(json.loads(row["files"])),
                at=row["at"],
            )
            for row in rows
        ]

    def add_question(self, q: Question) -> Question:
        """Record an open question (its ``id`` is ignored); return it with its id.

        On a full disk it gets its id at once and is written when the disk takes it.
        """
        choices = json.dumps(q.choices) if q.choices is not None else None

        def record(conn: sqlite3.Connection, new_id: int) -> None:
            conn.execute(
                "INSERT INTO worker_questions (id, asked_at, process, program, run_id, "
                "worker_id, text, choices, default_answer, timeout_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new_id,
                    q.asked_at,
                    q.process,
                    q.program,
                    q.run_id,
                    q.worker_id,
                    q.text,
                    choices,
                    q.default,
                    q.timeout_at,
                ),
            )
            conn.execute(
                "DELETE FROM worker_questions WHERE status != 'open' AND id <= ?",
                (new_id - QUESTIONS_KEEP,),
            )

        new_id, _ = self._ledger.record_new("worker_questions", "worker question", record)
        return replace(q, id=new_id)

    def close_question(
        self,
        question_id: int,
        *,
        status: QuestionStatus,
        answer: str | None = None,
        by: str = "",
        source: str = "",
        at: float | None = None,
    ) -> None:
        """Record how an open question closed (a closed one is left as it is)."""
        row = (status, answer, by, source, time.time() if at is None else at, question_id)

        def record(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE worker_questions SET status = ?, answer = ?, answered_by = ?, "
                "source = ?, closed_at = ? WHERE id = ? AND status = 'open'",
                row,
            )

        self._ledger.record("closed worker question", record)

    def close_open(self, *, status: QuestionStatus = "gone") -> int:
        """Close every open question (at start-up: their askers died with the last dsup).

        Returns:
            How many were closed (0 while the disk refuses it: they close when it takes it).
        """
        now = time.time()

        def record(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE worker_questions SET status = ?, closed_at = ? WHERE status = 'open'",
                (status, now),
            )
            return cursor.rowcount

        return self._ledger.record("closed worker questions", record) or 0


def _insert(results: Sequence[WorkerResult]) -> Callable[[sqlite3.Connection, int], None]:
    """The write of a batch of results from the first id the ledger chose; older ones past
    the bound go."""
    rows = [
        (r.at, r.process, r.program, r.run_id, r.text, r.data, json.dumps(r.files)) for r in results
    ]

    def record(conn: sqlite3.Connection, first: int) -> None:
        conn.executemany(
            "INSERT INTO worker_results (id, at, process, program, run_id, text, data, files) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(first + i, *row) for i, row in enumerate(rows)],
        )
        newest = first + len(rows) - 1
        conn.execute("DELETE FROM worker_results WHERE id <= ?", (newest - RESULTS_KEEP,))

    return record
