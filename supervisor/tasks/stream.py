"""Tasks for the workers of ``tasks = "stream"`` programs, over their channel (``DSUP_FD``).

A worker that called ``worker_sdk.tasks()`` is a consumer; each task it gets is one
attempt that ends with its answer, its timeout, a cancel, or the worker's exit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from supervisor.tasks.records import TaskOutcome, TaskState
from worker_sdk import protocol

if TYPE_CHECKING:
    from supervisor.config.schema import ProgramSpec
    from supervisor.process.worker_link import WorkerLink
    from supervisor.tasks.records import TaskRecord


@dataclass(eq=False, slots=True)
class _Pending:
    """A task sent to a worker, waiting for its answer."""

    answered: anyio.Event = field(default_factory=anyio.Event)
    outcome: TaskOutcome | None = None

    def end(self, outcome: TaskOutcome) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self.answered.set()


@dataclass(eq=False, slots=True)
class Consumer:
    """One worker process taking tasks, and its tasks in flight."""

    link: WorkerLink
    inflight: dict[int, _Pending] = field(default_factory=dict)

    def reserve(self, task_id: int) -> None:
        """Count a task in flight with this worker before it is sent."""
        self.inflight[task_id] = _Pending()


class StreamWorkers:
    """The workers that take tasks, by program."""

    def __init__(self) -> None:
        self._by_program: dict[str, list[Consumer]] = {}

    def add(self, link: WorkerLink) -> None:
        """A worker is ready for tasks."""
        self._by_program.setdefault(link.program, []).append(Consumer(link))

    def remove(self, link: WorkerLink) -> None:
        """A worker's channel ended: its tasks in flight fail."""
        consumers = self._by_program.get(link.program, [])
        for consumer in [c for c in consumers if c.link is link]:
            consumers.remove(consumer)
            for pending in consumer.inflight.values():
                pending.end(
                    TaskOutcome(
                        state=TaskState.FAILED,
                        reason=f"its worker {link.process} ended before answering it",
                    )
                )

    def pick(self, program: str) -> Consumer | None:
        """The worker of ``program`` with the fewest tasks in flight, if any takes tasks."""
        consumers = self._by_program.get(program, [])
        return min(consumers, key=lambda c: len(c.inflight), default=None)

    def answer(self, link: WorkerLink, task_id: int, outcome: TaskOutcome) -> bool:
        """A worker's answer to a task; False when that task is not in flight with it."""
        for consumer in self._by_program.get(link.program, []):
            if consumer.link is link and task_id in consumer.inflight:
                consumer.inflight[task_id].end(outcome)
                return True
        return False


async def run_stream_attempt(
    spec: ProgramSpec,
    task: TaskRecord,
    consumer: Consumer,
    cancel: anyio.CancelScope,
    files: tuple[str, ...] = (),
) -> TaskOutcome:
    """Give ``task`` (with the paths of its ``files``) to a worker; wait for its answer.

    It ends with the answer, the task's timeout or a cancel.

    A timed-out or cancelled task is cancelled on the worker's side too
    (``task_cancel``); an answer that comes later is ignored.
    """
    pending = consumer.inflight.setdefault(task.id, _Pending())
    try:
        message: dict[str, object] = {
            protocol.TYPE: protocol.TASK,
            "id": task.id,
            "text": task.text,
            "author": task.author,
            "files": list(files),
        }
        if not consumer.link.send(message):
            return TaskOutcome(
                state=TaskState.FAILED, reason=f"its worker {consumer.link.process} reads no tasks"
            )
        with anyio.move_on_after(spec.task_timeout_seconds) as timer, cancel:
            await pending.answered.wait()
        if pending.outcome is not None:
            return pending.outcome
        consumer.link.send({protocol.TYPE: protocol.TASK_CANCEL, "id": task.id})
        if timer.cancelled_caught:
            why = f"timed out after {spec.task_timeout_seconds:g} s (task_timeout_seconds)"
            return TaskOutcome(state=TaskState.TIMED_OUT, reason=why)
        return TaskOutcome(state=TaskState.CANCELLED, reason="cancelled")
    finally:
        consumer.inflight.pop(task.id, None)
