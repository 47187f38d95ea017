"""Worker questions whose Discord message does not show their end yet.

A question's message is an outbox row marked ``question:ID``, its end an edit marked
``question-closed:ID``; a question that closed with the last dsup is found here at the next
start, and its end queued then.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor.events import Question

if TYPE_CHECKING:
    from supervisor.events import QuestionStatus
    from supervisor.state.ledger import Ledger


@dataclass(frozen=True, slots=True, kw_only=True)
class UnsettledPost:
    """A closed question whose message does not show its end yet.

    Attributes:
        question: the question.
        status: how it closed.
        answer: the answer (or default sent), if any.
        by: who answered ("" unless answered).
        closed_at: when it closed.
    """

    question: Question
    status: QuestionStatus
    answer: str | None
    by: str
    closed_at: float | None


class QuestionPosts:
    """Reads the questions and the outbox's markers of one ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def unsettled(self, limit: int = 1000) -> list[UnsettledPost]:
        """Closed questions whose message was queued and whose end was not, oldest first."""
        rows = self._ledger.read(
            "SELECT q.* FROM worker_questions q "
            "JOIN outbox_meta asked ON asked.key = 'question:' || q.id "
            "LEFT JOIN outbox_meta closed ON closed.key = 'question-closed:' || q.id "
            "WHERE q.status != 'open' AND closed.key IS NULL ORDER BY q.id LIMIT ?",
            (limit,),
        )
        return [
            UnsettledPost(
                question=Question(
                    id=row["id"],
                    process=row["process"],
                    program=row["program"],
                    run_id=row["run_id"],
                    worker_id=row["worker_id"],
                    text=row["text"],
                    choices=tuple(json.loads(row["choices"])) if row["choices"] else None,
                    default=row["default_answer"],
                    asked_at=row["asked_at"],
                    timeout_at=row["timeout_at"],
                ),
                status=row["status"],
                answer=row["answer"],
                by=row["answered_by"],
                closed_at=row["closed_at"],
            )
            for row in rows
        ]
