"""Which Discord message shows each worker question, and whether it shows its end yet.

A question that closed while the bridge was away (or with the last dsup) is found here at
the next start, and its message is edited then.
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
    """A question's message that does not show the question's end yet.

    Attributes:
        question: the question.
        channel_id: where its message is.
        message_id: the message.
        status: how it closed.
        answer: the answer (or default sent), if any.
        by: who answered ("" unless answered).
        closed_at: when it closed.
    """

    question: Question
    channel_id: int
    message_id: int
    status: QuestionStatus
    answer: str | None
    by: str
    closed_at: float | None


class QuestionPosts:
    """The ``discord_questions`` table of one ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def posted(self, question_id: int, channel_id: int, message_id: int) -> None:
        """Remember the message that shows a question."""
        self._ledger.write(
            "INSERT OR REPLACE INTO discord_questions (question_id, channel_id, message_id) "
            "VALUES (?, ?, ?)",
            [(question_id, channel_id, message_id)],
        )

    def message_of(self, question_id: int) -> tuple[int, int] | None:
        """The channel and message showing a question, if it was posted."""
        rows = self._ledger.read(
            "SELECT channel_id, message_id FROM discord_questions WHERE question_id = ?",
            (question_id,),
        )
        return (rows[0]["channel_id"], rows[0]["message_id"]) if rows else None

    def settled(self, question_id: int) -> None:
        """The question's message shows how it closed."""
        self._ledger.write(
            "UPDATE discord_questions SET settled = 1 WHERE question_id = ?", [(question_id,)]
        )

    def unsettled(self, limit: int = 100) -> list[UnsettledPost]:
        """Messages of closed questions that do not say so yet, oldest first."""
        rows = self._ledger.read(
            "SELECT q.*, d.channel_id, d.message_id FROM discord_questions d "
            "JOIN worker_questions q ON q.id = d.question_id "
            "WHERE d.settled = 0 AND q.status != 'open' ORDER BY q.id LIMIT ?",
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
                channel_id=row["channel_id"],
                message_id=row["message_id"],
                status=row["status"],
                answer=row["answer"],
                by=row["answered_by"],
                closed_at=row["closed_at"],
            )
            for row in rows
        ]
