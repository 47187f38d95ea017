"""What one run's worker says on its channel (``DSUP_FD``), and dsup's answers.

One task per run turns messages into progress, logs, results and questions; a bad message is
counted and logged, never fatal. A new message type is a method in ``_HANDLERS``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import TYPE_CHECKING, ClassVar, Protocol

import anyio

from supervisor.errors import SupervisorError
from supervisor.events import (
    Progress,
    ProgressReported,
    Question,
    ResultReported,
    WorkerLogged,
    WorkerResult,
)
from supervisor.output.channel import MessageFramer, Sender, read_some
from worker_sdk import protocol

if TYPE_CHECKING:
    import socket
    from collections.abc import Awaitable, Callable

    from supervisor.events import Event, QuestionStatus
    from supervisor.output.channel import JsonObject
    from supervisor.process.questions import QuestionDesk
    from supervisor.state.worker_store import WorkerStore

logger = logging.getLogger(__name__)

PROGRESS_EVENT_SECONDS = 0.5
"""The least time between two ``ProgressReported`` of a run (the latest is kept meanwhile)."""
LOG_RATE = 50.0
"""Log messages per second a run may send on average; beyond, they are dropped and counted."""
LOG_BURST = 200
"""Log messages a run may send at once before :data:`LOG_RATE` applies."""
_SHIELD_SECONDS = 5.0  # the longest a question's record or close may hold a run's end


class Invalid(ValueError):
    """A message whose fields dsup cannot use (what is wrong, for the log and the worker)."""


class TaskBroker(Protocol):
    """Where a stream worker's tasks come from and its answers go (the task queue)."""

    def take(self, link: WorkerLink) -> bool:
        """The worker is ready for tasks (``take_tasks``); they go by :meth:`WorkerLink.send`.

        Returns:
            False when its program takes no tasks this way (not ``tasks = "stream"``).
        """

    async def answered(self, link: WorkerLink, task_id: int, *, ok: bool, text: str) -> None:
        """The worker answered a task: ``text`` is its answer (``ok``) or why it failed."""

    async def left(self, link: WorkerLink) -> None:
        """The worker's channel ended: its unanswered tasks are not coming back."""

    async def submit_from(self, link: WorkerLink, program: str, text: str) -> int:
        """A worker gives a task to ``program``; its id.

        Raises:
            SupervisorError: refused (no such task program, a full backlog, a bad text).
        """

    def wait_for(self, link: WorkerLink, request: object, task_id: int, timeout: float) -> None:
        """Answer ``request`` with a ``task_result`` once the task ends (or ``timeout``)."""


class WorkerLink:
    """The channel of one run: its messages, progress and open questions.

    Args:
        sock: dsup's end of the channel (non-blocking).
        process: ``program:index``.
        program: the program name.
        run_id: the run.
        cwd: the worker's cwd, to which result files are relative.
        emit: takes the worker events; must not block.
        desk: the node's questions.
        store: where results are recorded.
        clock: monotonic seconds.
        tasks: where a stream worker's tasks come from (None: it takes none).
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        process: str,
        program: str,
        run_id: str,
        cwd: str,
        emit: Callable[[Event], None],
        desk: QuestionDesk,
        store: WorkerStore,
        clock: Callable[[], float] = anyio.current_time,
        tasks: TaskBroker | None = None,
    ) -> None:
        self.process = process
        self.program = program
        self.run_id = run_id
        self.progress: Progress | None = None
        self.invalid = 0
        self.logs_dropped = 0
        self._sock = sock
        self._cwd = cwd
        self._emit = emit
        self._desk = desk
        self._store = store
        self._clock = clock
        self._framer = MessageFramer(process)
        self._sender = Sender(sock, process)
        self._questions: dict[str, tuple[Question, float | None]] = {}  # by the worker's id
        self._progress_due: float | None = None  # when the held-back progress is announced
        self._progress_sent_at = -math.inf
        self._tokens = float(LOG_BURST)
        self._tokens_at = clock()
        self._results: list[WorkerResult] = []
        self._tasks = tasks
        self.takes_tasks = False

    @property
    def open_question(self) -> Question | None:
        """The oldest open question of this run, if any."""
        return next((q for q, _ in self._questions.values()), None)

    @property
    def refused(self) -> int:
        """Lines and messages refused so far (bad framing, JSON or fields)."""
        return self._framer.stats.total() + self.invalid

    async def serve(self) -> None:
        """Read and handle messages until the worker's end closes, or cancelled.

        At the end, the open questions close as ``gone`` and the last progress
        is announced; both are shielded and bounded, so they happen when
        cancelled too. Sleeps in one wait for the socket (or the next timeout):
        a worker that never writes costs no wake-up.
        """
        try:
            while True:
                wait = self._next_deadline() - self._clock()
                if wait == math.inf:  # no cancel scope held while the worker is quiet
                    await anyio.wait_readable(self._sock)
                else:
                    with anyio.move_on_after(max(0.0, wait)):
                        await anyio.wait_readable(self._sock)
                messages, eof = read_some(self._sock, self._framer)
                await self._handle_all(messages)
                self._on_time()
                await self._expire()
                if eof:
                    return
        finally:
            with anyio.move_on_after(_SHIELD_SECONDS, shield=True):
                await self._end()

    def send(self, message: dict[str, object]) -> bool:
        """Send a message to the worker (a task); False when it was dropped."""
        return self._sender.send(message)

    def reply(self, question: Question, status: QuestionStatus, answer: str | None) -> None:
        """Tell the worker how its question closed (``QuestionDesk`` calls this)."""
        self._questions.pop(question.worker_id, None)
        message: dict[str, object] = {
            protocol.TYPE: protocol.ANSWER,
            "id": _wire_id(question.worker_id),
            "status": status,
        }
        if answer is not None:
            message["answer"] = answer
        self._sender.send(message)

    # -- the loop ----------------------------------------------------------------

    def _next_deadline(self) -> float:
        deadlines = [d for _, d in self._questions.values() if d is not None]
        if self._progress_due is not None:
            deadlines.append(self._progress_due)
        return min(deadlines, default=math.inf)

    async def _handle_all(self, messages: list[JsonObject]) -> None:
        for message in messages:
            kind = message[protocol.TYPE]
            handler = self._HANDLERS.get(kind) if isinstance(kind, str) else None
            try:
                if handler is None:
                    raise Invalid(f"unknown type {str(kind)[:40]!r}")
                await handler(self, message)
            except Invalid as exc:
                self._refuse(message, str(exc))
        await self._flush_results()

    def _refuse(self, message: JsonObject, why: str) -> None:
        self.invalid += 1
        if self.invalid == 1:
            logger.warning(
                "process %s: worker channel: ignored a message (%s); further ones are counted",
                self.process,
                why,
            )
        if "id" in message:
            self._sender.send({protocol.TYPE: protocol.ERROR, "id": message["id"], "message": why})

    def _on_time(self) -> None:
        """Announce the held-back progress once its time has come."""
        if self._progress_due is not None and self._clock() >= self._progress_due:
            self._announce_progress()

    def _announce_progress(self) -> None:
        self._progress_due = None
        if self.progress is not None:
            self._progress_sent_at = self._clock()
            self._emit(
                ProgressReported(process=self.process, run_id=self.run_id, progress=self.progress)
            )

    async def _expire(self) -> None:
        now = self._clock()
        for question, deadline in list(self._questions.values()):
            if deadline is not None and now >= deadline:
                self.reply(question, protocol.TIMED_OUT, question.default)
                await self._desk.close(question, protocol.TIMED_OUT, question.default)

    async def _end(self) -> None:
        if self.logs_dropped:
            logger.warning(
                "process %s: %d worker log messages were dropped (over %g a second)",
                self.process,
                self.logs_dropped,
                LOG_RATE,
            )
        if self.refused:
            logger.warning(
                "process %s: worker channel: %d messages ignored in all (%s, %d invalid)",
                self.process,
                self.refused,
                self._framer.stats,
                self.invalid,
            )
        if self._progress_due is not None:
            self._announce_progress()
        await self._flush_results()
        if self._tasks is not None and self.takes_tasks:
            await self._tasks.left(self)
        for question, _ in list(self._questions.values()):
            self._questions.pop(question.worker_id, None)
            await self._desk.close(question, protocol.GONE)

    # -- messages ---------------------------------------------------------------

    async def _on_progress(self, message: JsonObject) -> None:
        done, total = _number(message, "done"), _number(message, "total")
        fraction = _number(message, "fraction")
        if fraction is None and done is not None and total is not None and total > 0:
            fraction = done / total
        if fraction is None:
            raise Invalid('progress needs "fraction", or "done" and "total" > 0')
        self.progress = Progress(
            fraction=min(1.0, max(0.0, fraction)),
            text=_text(message, "text", protocol.MAX_PROGRESS_TEXT_CHARS),
            done=done,
            total=total,
            at=time.time(),
        )
        due = self._progress_sent_at + PROGRESS_EVENT_SECONDS
        if self._clock() >= due:
            self._announce_progress()
        elif self._progress_due is None:
            self._progress_due = due

    async def _on_log(self, message: JsonObject) -> None:
        level = message.get("level", "info")
        if level not in protocol.LEVELS:
            raise Invalid(f"log level must be one of {', '.join(protocol.LEVELS)}")
        text = _text(message, "text", protocol.MAX_TEXT_CHARS)
        if not self._take_token():
            self.logs_dropped += 1
            return
        self._emit(
            WorkerLogged(
                process=self.process,
                run_id=self.run_id,
                level=str(level),
                text=text,
                at=time.time(),
            )
        )

    def _take_token(self) -> bool:
        now = self._clock()
        self._tokens = min(float(LOG_BURST), self._tokens + (now - self._tokens_at) * LOG_RATE)
        self._tokens_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    async def _on_result(self, message: JsonObject) -> None:
        data = message.get("data")
        if data is not None and not isinstance(data, dict):
            raise Invalid('result "data" must be a JSON object')
        files = message.get("files", [])
        if not isinstance(files, list) or len(files) > protocol.MAX_FILES:
            raise Invalid(f'result "files" must be a list of at most {protocol.MAX_FILES} paths')
        paths = []
        for f in files:
            if not isinstance(f, str) or not f or "\0" in f:
                raise Invalid('result "files" must hold non-empty path strings')
            paths.append(_under(self._cwd, f))
        text = _text(message, "text", protocol.MAX_TEXT_CHARS)
        if data is None and not text and not paths:
            raise Invalid('a result needs "data", "text" or "files"')
        self._results.append(
            WorkerResult(
                id=0,
                process=self.process,
                program=self.program,
                run_id=self.run_id,
                text=text,
                data=json.dumps(data, ensure_ascii=False) if data is not None else None,
                files=tuple(paths),
                at=time.time(),
            )
        )

    async def _flush_results(self) -> None:
        """Record the results of a batch in one transaction, then announce them."""
        if not self._results:
            return
        batch, self._results = self._results, []
        with anyio.CancelScope(shield=True):
            recorded = await anyio.to_thread.run_sync(self._store.add_results, batch)
        for result in recorded:
            self._emit(ResultReported(result=result))

    async def _on_ask(self, message: JsonObject) -> None:
        await self._flush_results()  # a result reported before the question shows first
        worker_id = _worker_id(message)
        if worker_id in self._questions:
            raise Invalid(f"question id {worker_id!r} is already open")
        if len(self._questions) >= protocol.MAX_OPEN_QUESTIONS:
            raise Invalid(f"at most {protocol.MAX_OPEN_QUESTIONS} questions may be open at once")
        question = _question(message, self.process, self.program, self.run_id, worker_id)
        with anyio.move_on_after(_SHIELD_SECONDS, shield=True) as scope:
            question = await self._desk.ask(question, self)
        if scope.cancelled_caught:
            raise Invalid("dsup could not record the question in time")
        timeout = _number(message, "timeout")
        deadline = self._clock() + timeout if timeout is not None else None
        self._questions[worker_id] = (question, deadline)

    async def _on_take_tasks(self, message: JsonObject) -> None:
        if self._tasks is None or not (self.takes_tasks or self._tasks.take(self)):
            raise Invalid(f'program {self.program!r} takes no tasks here (tasks = "stream")')
        self.takes_tasks = True

    async def _on_task_answer(self, message: JsonObject) -> None:
        task_id = message.get("id")
        if self._tasks is None or not self.takes_tasks:
            raise Invalid("no tasks were given to this worker")
        if isinstance(task_id, bool) or not isinstance(task_id, int):
            raise Invalid("a task's answer needs the task's integer id")
        if message[protocol.TYPE] == protocol.TASK_FAIL:
            reason = _text(message, "reason", protocol.MAX_TEXT_CHARS) or "no reason given"
            await self._tasks.answered(self, task_id, ok=False, text=reason)
            return
        data = message.get("data")
        if data is not None and not isinstance(data, dict):
            raise Invalid('a task\'s "data" must be a JSON object')
        files = message.get("files", [])
        if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
            raise Invalid('a task\'s "files" must be a list of paths')
        parts = [_text(message, "text", protocol.MAX_TEXT_CHARS)]
        if data is not None:
            parts.append(json.dumps(data, indent=2, ensure_ascii=False))
        if files:
            parts.append("files: " + ", ".join(_under(self._cwd, f) for f in files))
        await self._tasks.answered(self, task_id, ok=True, text="\n".join(p for p in parts if p))

    async def _on_submit(self, message: JsonObject) -> None:
        if self._tasks is None:
            raise Invalid("this dsup gives no tasks")
        program, text = message.get("program"), message.get("text")
        if "id" not in message or not isinstance(program, str) or not isinstance(text, str):
            raise Invalid('a submit needs "id", "program" and "text"')
        try:
            task_id = await self._tasks.submit_from(self, program, text)
        except SupervisorError as exc:
            raise Invalid(str(exc)) from None
        self._sender.send({protocol.TYPE: protocol.SUBMITTED, "id": message["id"], "task": task_id})

    async def _on_task_wait(self, message: JsonObject) -> None:
        task_id, timeout = message.get("task"), _number(message, "timeout")
        if self._tasks is None:
            raise Invalid("this dsup gives no tasks")
        if "id" not in message or isinstance(task_id, bool) or not isinstance(task_id, int):
            raise Invalid('a task_wait needs "id" and the integer "task"')
        wait = protocol.MAX_TIMEOUT_SECONDS if timeout is None else max(0.0, timeout)
        self._tasks.wait_for(self, message["id"], task_id, min(wait, protocol.MAX_TIMEOUT_SECONDS))

    _HANDLERS: ClassVar[dict[str, Callable[[WorkerLink, JsonObject], Awaitable[None]]]] = {
        protocol.SUBMIT: _on_submit,
        protocol.TASK_WAIT: _on_task_wait,
        protocol.PROGRESS: _on_progress,
        protocol.LOG: _on_log,
        protocol.RESULT: _on_result,
        protocol.ASK: _on_ask,
        protocol.TAKE_TASKS: _on_take_tasks,
        protocol.TASK_REPLY: _on_task_answer,
        protocol.TASK_FAIL: _on_task_answer,
    }


def _number(message: JsonObject, key: str) -> float | None:
    value = message.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Invalid(f"{key!r} must be a finite number")
    return float(value)


def _text(message: JsonObject, key: str, limit: int) -> str:
    value = message.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Invalid(f"{key!r} must be a string")
    return _clean(value)[:limit]


def _under(cwd: str, path: str) -> str:
    """``path`` made absolute against the worker's ``cwd`` (no file system access)."""
    return os.path.normpath(os.path.join(cwd, path))


def _clean(text: str) -> str:
    """``text`` without lone surrogates (valid JSON, not valid text)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _worker_id(message: JsonObject) -> str:
    value = message.get("id")
    if isinstance(value, bool) or not isinstance(value, str | int) or len(str(value)) > 64:
        raise Invalid('a question needs an "id": a string of at most 64 characters or an integer')
    return json.dumps(value)  # "q1" and 1 stay apart, and the worker gets back what it sent


def _wire_id(worker_id: str) -> object:
    return json.loads(worker_id)


def _question(
    message: JsonObject, process: str, program: str, run_id: str, worker_id: str
) -> Question:
    text = message.get("question")
    if not isinstance(text, str) or not text.strip():
        raise Invalid('a question needs a non-empty "question"')
    choices = message.get("choices")
    picks: tuple[str, ...] | None = None
    if choices is not None:
        if not isinstance(choices, list) or not 0 < len(choices) <= protocol.MAX_CHOICES:
            raise Invalid(f'"choices" must be a list of 1 to {protocol.MAX_CHOICES} strings')
        if not all(isinstance(c, str) and c.strip() for c in choices):
            raise Invalid('"choices" must be non-empty strings')
        picks = tuple(_clean(c)[: protocol.MAX_CHOICE_CHARS] for c in choices)
        if len(set(picks)) != len(picks):
            raise Invalid('"choices" must differ')
    timeout = _number(message, "timeout")
    if timeout is not None and not 0 < timeout <= protocol.MAX_TIMEOUT_SECONDS:
        raise Invalid(f'"timeout" must be > 0 and at most {protocol.MAX_TIMEOUT_SECONDS:g} s')
    default = message.get("default")
    if default is not None and (not isinstance(default, str) or (picks and default not in picks)):
        raise Invalid('"default" must be one of the "choices"')
    now = time.time()
    return Question(
        id=0,
        process=process,
        program=program,
        run_id=run_id,
        worker_id=worker_id,
        text=_clean(text)[: protocol.MAX_TEXT_CHARS],
        choices=picks,
        default=_clean(default) if isinstance(default, str) else None,
        asked_at=now,
        timeout_at=now + timeout if timeout is not None else None,
    )
