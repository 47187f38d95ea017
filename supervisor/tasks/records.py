"""The records of the task queue: a task's states, a stored task, a new one, an outcome.

They cross the task store's boundary, so the queue, the command surface and the
transports name tasks without knowing where the store keeps them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

TaskSource = Literal["local", "discord", "worker"]

MAX_TASK_TEXT_BYTES = 32 * 1024
"""The longest task text, in UTF-8 bytes: under Linux's limit for one argv element
(128 KiB) and the control socket's request line (64 KiB) with room for escaping."""


class TaskState(enum.Enum):
    """Where a task is in its life; the last four are final."""

    QUEUED = "queued"  # waiting for a worker (again, after a node died during an attempt)
    RUNNING = "running"  # claimed by a node, an attempt under way
    DONE = "done"  # exit 0: the result is the reply
    FAILED = "failed"  # nonzero exit, a signal, a spawn error, or too many attempts
    TIMED_OUT = "timed_out"  # ran past task_timeout_seconds; its tree was stopped
    CANCELLED = "cancelled"  # by an operator; a running tree was stopped

    @property
    def is_final(self) -> bool:
        """True once nothing more happens to the task."""
        return self not in (TaskState.QUEUED, TaskState.RUNNING)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTask:
    """A task as submitted, before the store gives it an id.

    Attributes:
        program: the program that takes it.
        text: what to do (at most :data:`MAX_TASK_TEXT_BYTES`).
        source: where it came from.
        author: who posted it (local user, Discord user, ``planner:0``).
        source_key: makes submission idempotent (a Discord message id): a second
            submission with the same key returns the first task.
        max_attempts: attempts before a task whose node keeps dying fails.
        reply_channel: the chat channel its answer goes to (Discord), if any.
        reply_to: the chat message the answer replies to, if any.
    """

    program: str
    text: str
    source: TaskSource
    author: str
    source_key: str | None = None
    max_attempts: int = 3
    reply_channel: int | None = None
    reply_to: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskOutcome:
    """How one attempt ended.

    Attributes:
        state: DONE, FAILED, TIMED_OUT or CANCELLED.
        result: the reply (the worker's stdout) for DONE, else "".
        reason: why it failed, timed out or was cancelled, with the last lines
            of stderr; "" for DONE.
        exit_code: the process's exit status, if it called exit().
        exit_signal: the signal that killed it, if any.
    """

    state: TaskState
    result: str = ""
    reason: str = ""
    exit_code: int | None = None
    exit_signal: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRecord:
    """One task as the store holds it.

    Attributes:
        id: increasing task id.
        program, text, source, author, source_key, max_attempts: as submitted.
        state: where it is now.
        attempts: attempts started so far (claims).
        created_at: wall-clock submission time.
        started_at: wall-clock start of the latest attempt, or None.
        ended_at: wall-clock end, once final.
        owner: the node running it (while RUNNING).
        lease_until: wall-clock end of the owner's claim unless renewed.
        cancel_by: who asked to cancel it while it ran, or None.
        result: the reply once DONE.
        reason: why it failed, timed out, was cancelled or queued again.
        exit_code: the last attempt's exit status, if any.
        exit_signal: the signal that ended the last attempt, if any.
        reply_channel, reply_to: where its answer goes in a chat, as submitted.
        replied_at: wall-clock time its answer was queued for the chat, once it was.
    """

    id: int
    program: str
    text: str
    source: TaskSource
    author: str
    source_key: str | None
    max_attempts: int
    state: TaskState
    attempts: int
    created_at: float
    started_at: float | None
    ended_at: float | None
    owner: str | None
    lease_until: float | None
    cancel_by: str | None
    result: str
    reason: str
    exit_code: int | None
    exit_signal: int | None
    reply_channel: int | None = None
    reply_to: int | None = None
    replied_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskList:
    """The answer to ``tasks``: the latest tasks, newest first."""

    tasks: tuple[TaskRecord, ...]
