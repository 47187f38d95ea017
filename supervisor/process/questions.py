"""The node's open questions: asked by workers, answered once by an operator.

Each is recorded before it is shown and closed exactly once: answered (the first answer wins),
timed out, or ``gone`` with its asker.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import TYPE_CHECKING, Protocol

import anyio

from supervisor.errors import InvalidArgument, UnknownQuestion
from supervisor.events import QuestionAsked, QuestionClosed
from worker_sdk import protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from supervisor.events import Event, Question, QuestionStatus
    from supervisor.state.worker_store import WorkerStore

logger = logging.getLogger(__name__)

_WRITE_SECONDS = 5.0  # the longest a question's closing record may take


class Asker(Protocol):
    """The run a question came from (``worker_link.WorkerLink``)."""

    def reply(self, question: Question, status: QuestionStatus, answer: str | None) -> None:
        """Tell the worker how its question closed; never blocks."""


class QuestionDesk:
    """The open questions of one node.

    Args:
        store: where questions are recorded.
        emit: takes ``QuestionAsked`` and ``QuestionClosed``; must not block.
    """

    def __init__(self, store: WorkerStore, emit: Callable[[Event], None]) -> None:
        self._store = store
        self._emit = emit
        self._open: dict[int, tuple[Question, Asker]] = {}

    def open_questions(self) -> list[Question]:
        """Every open question, oldest first."""
        return [q for q, _ in self._open.values()]

    async def ask(self, question: Question, asker: Asker) -> Question:
        """Record ``question`` (it gets its id), open it and announce it."""
        recorded = await anyio.to_thread.run_sync(self._store.add_question, question)
        self._open[recorded.id] = (recorded, asker)
        logger.info(
            "process %s asks question %d: %s", recorded.process, recorded.id, recorded.text[:200]
        )
        self._emit(QuestionAsked(question=recorded))
        return recorded

    async def answer(
        self, question_id: int, answer: str, *, by: str, source: str
    ) -> tuple[Question, str]:
        """Answer an open question: the worker gets it, the ledger and the events say who.

        Returns:
            The question answered, and the answer the worker got (the choice
            as the worker spelled it, or the text stripped).

        Raises:
            UnknownQuestion: no open question has this id (another answer won).
            InvalidArgument: ``answer`` is not one of its choices, or bad free text.
        """
        entry = self._open.get(question_id)
        if entry is None:
            raise UnknownQuestion(question_id, sorted(self._open))
        question, asker = entry
        answer = _checked(question, answer)
        del self._open[question_id]  # before any await: the first answer wins
        asker.reply(question, protocol.ANSWERED, answer)
        await self._closed(question, protocol.ANSWERED, answer, by=by, source=source)
        return question, answer

    async def close(
        self, question: Question, status: QuestionStatus, answer: str | None = None
    ) -> None:
        """Close a question its run ends (timed out, or its asker gone); no-op if closed."""
        if self._open.pop(question.id, None) is None:
            return
        await self._closed(question, status, answer, by="", source="")

    async def _closed(
        self,
        question: Question,
        status: QuestionStatus,
        answer: str | None,
        *,
        by: str,
        source: str,
    ) -> None:
        at = time.time()
        logger.info("question %d of %s: %s %s", question.id, question.process, status, by)
        write = functools.partial(
            self._store.close_question,
            question.id,
            status=status,
            answer=answer,
            by=by,
            source=source,
            at=at,
        )
        with anyio.move_on_after(_WRITE_SECONDS, shield=True) as scope:
            await anyio.to_thread.run_sync(write)
        if scope.cancelled_caught:
            logger.error("question %d: its closing was not recorded in time", question.id)
        self._emit(QuestionClosed(question=question, status=status, answer=answer, by=by, at=at))


def _checked(question: Question, answer: str) -> str:
    """``answer`` as the worker gets it: one of the choices (any case), or free text."""
    if question.choices is not None:
        for choice in question.choices:
            if answer == choice or answer.casefold() == choice.casefold():
                return choice
        raise InvalidArgument(
            "answer", "choice", answer[:80], f"answer one of: {', '.join(question.choices)}"
        )
    text = answer.strip()
    if not text or len(text) > protocol.MAX_ANSWER_CHARS:
        raise InvalidArgument(
            "answer",
            "text",
            answer[:80],
            f"give a non-empty answer of at most {protocol.MAX_ANSWER_CHARS} characters",
        )
    return text
