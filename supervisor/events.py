"""The process states, and the events slots emit for the fleet to fan out to its sinks.

Plain frozen records, so the console, the ledger and the bridge can each take them their way.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal, Protocol

Stream = Literal["stdout", "stderr"]


class ProcessState(enum.Enum):
    """Life-cycle states of one process, with supervisord's meanings."""

    STOPPED = "STOPPED"  # never started, or stopped by an operator
    STARTING = "STARTING"  # spawned, not yet up for start_seconds
    RUNNING = "RUNNING"  # up for at least start_seconds
    BACKOFF = "BACKOFF"  # exited too early; waiting before the next try
    STOPPING = "STOPPING"  # stop signal sent, waiting for the tree to end
    EXITED = "EXITED"  # exited on its own, not a failed start; maybe restarted by policy
    FATAL = "FATAL"  # too many failed starts; stays down until started by hand

    @property
    def is_alive(self) -> bool:
        """True while a process of this slot may exist (spawned and not reaped)."""
        return self in _ALIVE


_ALIVE = frozenset({ProcessState.STARTING, ProcessState.RUNNING, ProcessState.STOPPING})


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanged:
    """A process moved from one state to another.

    Attributes:
        process: process name, ``program:index``.
        program: program name.
        old: the state before.
        new: the state after.
        pid: the pid of the run concerned, if any.
        run_id: the run concerned, if any.
        exit_code: exit status when the run ended with ``exit()``.
        exit_signal: signal number when the run was killed by a signal.
        reason: a short human explanation ("exited too quickly", "stopped by alice").
        restarts: runs the slot started by itself so far (its status's ``restarts``).
        at: wall-clock time (display only).
    """

    process: str
    program: str
    old: ProcessState
    new: ProcessState
    pid: int | None = None
    run_id: str | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    reason: str = ""
    restarts: int = 0
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputChunk:
    """Complete lines a process wrote, as raw bytes, for the consumers of output.

    Nothing is decoded or escaped: each consumer does that for what it keeps.

    Attributes:
        process: process name, ``program:index``.
        stream: ``stdout`` or ``stderr``.
        data: whole lines, each ending with ``b"\n"`` (a line longer than
            ``max_line_bytes`` arrives as several pieces, each ending with one);
            possibly empty.
        dropped_bytes: bytes of the lines right after ``data`` that the
            consumers had no room for.
        dropped: how many lines those were, counted only for a consumer that
            counts (no drop tally from ``OutputConsumer.room``, or within its tally's
            ``count_bytes``); else 0.
        uncounted_bytes: the last of ``dropped_bytes``, whose lines ``dropped``
            does not count.
    """

    process: str
    stream: Stream
    data: bytes
    dropped_bytes: int = 0
    dropped: int = 0
    uncounted_bytes: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class OrphansCleaned:
    """The reaper ended processes left behind by an earlier run or a dead worker.

    Attributes:
        pids: the pids ended.
        reason: ``startup`` (left by a previous dsup) or ``sweep`` (periodic).
    """

    pids: tuple[int, ...]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """How far a worker says its work is (the latest ``progress`` message of a run).

    Attributes:
        fraction: 0 to 1.
        text: what is being done ("page 40 of 100"), or "".
        done: the work done, when the worker gave a total.
        total: the whole work, when given.
        at: wall-clock time it was reported.
    """

    fraction: float
    text: str = ""
    done: float | None = None
    total: float | None = None
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Question:
    """A question a worker asked a human (``ask``).

    Attributes:
        id: the node's id for it (the ledger's), what ``dsup ctl answer`` takes.
        process: who asked, ``program:index``.
        program: the program name.
        run_id: the run that asked.
        worker_id: the worker's own id for it (echoed in the answer).
        text: the question.
        choices: the answers offered; None for free text.
        default: what the worker gets on timeout, if anything.
        asked_at: wall-clock time it was asked.
        timeout_at: wall-clock time it times out, None for never.
    """

    id: int
    process: str
    program: str
    run_id: str
    worker_id: str
    text: str
    choices: tuple[str, ...] | None
    default: str | None
    asked_at: float
    timeout_at: float | None


QuestionStatus = Literal["open", "answered", "timeout", "gone"]
"""``gone``: its worker exited (or dsup stopped) before anyone answered."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerResult:
    """A result a worker reported (``result``), as recorded.

    Attributes:
        id: the ledger's id for it.
        process: who reported it, ``program:index``.
        program: the program name.
        run_id: the run that reported it.
        text: the result in words, or "".
        data: the structured data as JSON text (an object), or None.
        files: absolute paths of the files it names.
        at: wall-clock time it was reported.
    """

    id: int
    process: str
    program: str
    run_id: str
    text: str
    data: str | None
    files: tuple[str, ...]
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressReported:
    """A worker's progress changed (at most a few times a second per run)."""

    process: str
    run_id: str
    progress: Progress


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerLogged:
    """A worker logged a message for the operator (``log``).

    Attributes:
        process: who, ``program:index``.
        run_id: the run.
        level: ``debug``, ``info``, ``warning`` or ``error``.
        text: the message.
        at: wall-clock time.
    """

    process: str
    run_id: str
    level: str
    text: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultReported:
    """A worker reported a result (recorded in the ledger first)."""

    result: WorkerResult


@dataclass(frozen=True, slots=True, kw_only=True)
class QuestionAsked:
    """A worker asked a question (recorded in the ledger first)."""

    question: Question


@dataclass(frozen=True, slots=True, kw_only=True)
class QuestionClosed:
    """A question was answered, timed out, or lost its asker.

    Attributes:
        question: the question.
        status: ``answered``, ``timeout`` or ``gone``.
        answer: the answer given (or the default sent on timeout), else None.
        by: who answered ("" unless answered).
        at: wall-clock time it closed.
    """

    question: Question
    status: QuestionStatus
    answer: str | None = None
    by: str = ""
    at: float


WorkerEvent = ProgressReported | WorkerLogged | ResultReported | QuestionAsked | QuestionClosed
"""What a worker said on its channel to dsup (docs/worker_protocol.md)."""

Event = StateChanged | OutputChunk | OrphansCleaned | WorkerEvent


class EventSink(Protocol):
    """Something that takes events without ever blocking the producer."""

    def deliver(self, event: Event) -> None:
        """Take one event; must not block and must not raise for a slow consumer."""
