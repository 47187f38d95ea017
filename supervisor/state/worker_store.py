"""What workers reported and asked, kept in the ledger: results and questions.

They outlive their runs; a question still open when dsup starts lost its asker with the last
dsup, and is closed as ``gone``.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from supervisor.events import WorkerResult

if TYPE_CHECKING:
    from supervisor.events import Question, QuestionStatus

if TYPE_CHECKING:
    from collections.abc import Sequence

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
        """Record results (their ``id`` is ignored); return them with their ids."""
        recorded = []
        with self._ledger.transaction() as conn:
            for r in results:
                cursor = conn.execute(
                    "INSERT INTO worker_results (at, process, program, run_id, text, data, files) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (r.at, r.process, r.program, r.run_id, r.text, r.data, json.dumps(r.files)),
                )
                new_id = cursor.lastrowid or 0
                recorded.append(replace(r, id=new_id))
            if recorded:
                conn.execute(
                    "DELETE FROM worker_results WHERE id <= ?", (recorded[-1].id - RESULTS_KEEP,)
                )
        return recorded

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
        """Record an open question (its ``id`` is ignored); return it with its id."""
        choices = json.dumps(q.choices) if q.choices is not None else None
        with self._ledger.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO worker_questions (asked_at, process, program, run_id, worker_id, "
                "text, choices, default_answer, timeout_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
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
            new_id = cursor.lastrowid or 0
            conn.execute(
                "DELETE FROM worker_questions WHERE status != 'open' AND id <= ?",
                (new_id - QUESTIONS_KEEP,),
            )
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
        self._ledger.write(
            "UPDATE worker_questions SET status = ?, answer = ?, answered_by = ?, source = ?, "
            "closed_at = ? WHERE id = ? AND status = 'open'",
            [(status, answer, by, source, time.time() if at is None else at, question_id)],
        )

    def close_open(self, *, status: QuestionStatus = "gone") -> int:
        """Close every open question (at start-up: their askers died with the last dsup)."""
        with self._ledger.transaction() as conn:
            cursor = conn.execute(
                "UPDATE worker_questions SET status = ?, closed_at = ? WHERE status = 'open'",
                (status, time.time()),
            )
            return cursor.rowcount
