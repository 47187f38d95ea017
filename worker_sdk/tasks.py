"""Tasks for a long-running worker: ``for task in worker_sdk.tasks(): task.reply(...)``.

Under dsup they come on the channel, at most ``concurrency`` unanswered at once; outside
dsup each line of stdin is a task and answers are printed, so a worker can be tried by hand.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from worker_sdk import protocol
from worker_sdk.channel import Channel, connect

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

_POLL_SECONDS = 0.5  # how often a waiting tasks() looks whether dsup's end is gone


@dataclass(eq=False)
class Task:
    """One task: answer it once, with :meth:`reply` or :meth:`fail`.

    Attributes:
        id: dsup's task id.
        text: what to do.
        author: who gave it.
        files: paths of the files that came with it.
    """

    id: int
    text: str
    author: str = ""
    files: tuple[str, ...] = ()
    _channel: Channel | None = field(default=None, repr=False)
    _answered: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reply(self, answer: str | Mapping[str, object], files: Iterable[str] = ()) -> None:
        """Answer the task: a text, or a JSON-able mapping, and files (paths) to attach.

        Raises:
            RuntimeError: the task was already answered.
        """
        message: dict[str, object] = {protocol.TYPE: protocol.TASK_REPLY, "id": self.id}
        if isinstance(answer, str):
            message["text"] = answer
        else:
            message["data"] = dict(answer)
        paths = [str(f) for f in files]
        if paths:
            message["files"] = paths
        self._answer(message)

    def fail(self, reason: str) -> None:
        """Say the task failed, and why.

        Raises:
            RuntimeError: the task was already answered.
        """
        self._answer({protocol.TYPE: protocol.TASK_FAIL, "id": self.id, "reason": str(reason)})

    def _answer(self, message: dict[str, object]) -> None:
        with self._lock:
            if self._answered:
                raise RuntimeError(f"task {self.id} was already answered")
            self._answered = True
        if self._channel is None or not self._channel.send(message):
            sys.stdout.write(json.dumps(message, ensure_ascii=False) + "\n")
            sys.stdout.flush()


def tasks() -> Iterator[Task]:
    """The worker's tasks, as they come; ends when dsup's end of the channel is gone.

    Outside dsup, each non-empty line of stdin is a task (ids from 1), and answers
    are printed as JSON lines.
    """
    channel = connect()
    if channel is None:
        yield from _stdin_tasks()
        return
    inbox: queue.Queue[dict[str, object]] = queue.Queue()
    channel.on(protocol.TASK, inbox.put)
    if not channel.send({protocol.TYPE: protocol.TAKE_TASKS}):
        return
    while True:
        try:
            message = inbox.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            if channel.is_broken:
                return
            continue
        yield _task(message, channel)


def _task(message: Mapping[str, object], channel: Channel) -> Task:
    raw_id, files = message.get("id"), message.get("files")
    return Task(
        id=raw_id if isinstance(raw_id, int) else 0,
        text=str(message.get("text", "")),
        author=str(message.get("author", "")),
        files=tuple(str(f) for f in files) if isinstance(files, list) else (),
        _channel=channel,
    )


def _stdin_tasks() -> Iterator[Task]:
    for number, line in enumerate(sys.stdin, start=1):
        if line.strip():
            yield Task(id=number, text=line.rstrip("\n"), author="stdin")


_SUBMIT_SECONDS = 30.0  # the longest dsup may take to record a submitted task
_WAIT_GRACE_SECONDS = 5.0  # how much longer than its timeout a wait waits for dsup's word


@dataclass(frozen=True)
class TaskResult:
    """How a submitted task ended (or where it was when a wait timed out).

    Attributes:
        id: dsup's task id.
        state: ``done``, ``failed``, ``timed_out``, ``cancelled``; ``queued`` or
            ``running`` when the wait ended first.
        result: the answer when done.
        reason: why it failed, timed out or was cancelled.
    """

    id: int
    state: str
    result: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        """True when the task is done."""
        return self.state == "done"


@dataclass(frozen=True)
class Submitted:
    """A task this worker gave to another program: wait for it with :meth:`wait`."""

    id: int
    _channel: Channel = field(repr=False)

    def wait(self, timeout: float | None = None) -> TaskResult:
        """Block until the task ends, or ``timeout`` seconds; its result.

        Raises:
            RuntimeError: the channel to dsup broke before the answer.
        """
        message: dict[str, object] = {
            protocol.TYPE: protocol.TASK_WAIT,
            "id": self._channel.new_id("w"),
            "task": self.id,
        }
        if timeout is not None:
            message["timeout"] = timeout
        limit = None if timeout is None else timeout + _WAIT_GRACE_SECONDS
        reply = self._channel.request(message, timeout=limit)
        if reply is None:
            raise RuntimeError(f"task {self.id}: no word from dsup")
        if reply.get(protocol.TYPE) == protocol.ERROR:
            raise RuntimeError(f"task {self.id}: {reply.get('message')}")
        return TaskResult(
            id=self.id,
            state=str(reply.get("state", "")),
            result=str(reply.get("result", "")),
            reason=str(reply.get("reason", "")),
        )


def submit(program: str, text: str) -> Submitted:
    """Give a task to ``program`` (a pipeline's next step); returns once dsup recorded it.

    Raises:
        RuntimeError: not under dsup, or dsup did not answer.
        ValueError: dsup refused it (no such task program, a full backlog, a bad text).
    """
    channel = connect()
    if channel is None:
        raise RuntimeError("submit needs dsup: this process has no channel to it (DSUP_FD)")
    message = {
        protocol.TYPE: protocol.SUBMIT,
        "id": channel.new_id("s"),
        "program": program,
        "text": text,
    }
    reply = channel.request(message, timeout=_SUBMIT_SECONDS)
    if reply is None:
        raise RuntimeError(f"submit to {program!r}: no word from dsup")
    if reply.get(protocol.TYPE) == protocol.ERROR:
        raise ValueError(f"submit to {program!r}: {reply.get('message')}")
    task = reply.get("task")
    if not isinstance(task, int):
        raise RuntimeError(f"submit to {program!r}: an unexpected answer from dsup")
    return Submitted(id=task, _channel=channel)
