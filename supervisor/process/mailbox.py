"""A slot's mailbox: commands queued to the slot's task, taken one at a time, answered once.

Concurrent callers cannot interleave half-done transitions; whatever is left when the task
ends is answered there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import anyio

from supervisor.errors import InvalidTransition

if TYPE_CHECKING:
    from collections.abc import Callable

    from supervisor.process.status import ProcessStatus

Kind = Literal["start", "stop", "restart"]


@dataclass(eq=False, slots=True, kw_only=True)
class QueuedCommand:
    """One command and, once answered, its result or error."""

    kind: Kind
    reason: str
    done: anyio.Event = field(default_factory=anyio.Event)
    result: ProcessStatus | None = None
    error: InvalidTransition | None = None

    def finish(self, result: ProcessStatus | None, error: InvalidTransition | None = None) -> None:
        """Answer the command; later answers are ignored."""
        if not self.done.is_set():
            self.result, self.error = result, error
            self.done.set()


class Mailbox:
    """Commands to one slot, taken one at a time by the slot's task, or refused at once.

    Args:
        process: the slot's name ``program:index``, for errors.
        on_queued: called as each command is queued; it may :meth:`refuse_first`
            (the slot refuses a start of a live process without waiting).
    """

    __slots__ = ("_on_queued", "_process", "_queue", "_settling", "_wake")

    def __init__(self, process: str, on_queued: Callable[[], None] | None = None) -> None:
        self._process = process
        self._on_queued = on_queued
        self._queue: list[QueuedCommand] = []  # a few at most (a deque costs 0.6 KB)
        self._wake: anyio.Event | None = None
        self._settling: list[QueuedCommand] = []

    async def submit(self, kind: Kind, reason: str) -> ProcessStatus:
        """Queue a command and wait for its answer.

        A cancelled caller does not cancel the command.

        Raises:
            InvalidTransition: the command was refused.
        """
        cmd = QueuedCommand(kind=kind, reason=reason)
        self._queue.append(cmd)
        if self._on_queued is not None:
            self._on_queued()
        if self._wake is not None:
            self._wake.set()
        await cmd.done.wait()
        if cmd.error is not None:
            raise cmd.error
        assert cmd.result is not None  # finish() gives a result or an error
        return cmd.result

    def first(self) -> QueuedCommand | None:
        """The oldest command not yet taken."""
        return self._queue[0] if self._queue else None

    def refuse_first(self, error: InvalidTransition) -> None:
        """Answer the oldest command with ``error`` and drop it."""
        self._queue.pop(0).finish(None, error)

    async def take(self) -> QueuedCommand:
        """The oldest command, once there is one; the taker answers it or :meth:`settle_later`."""
        while not self._queue:
            self._wake = anyio.Event()
            await self._wake.wait()
        self._wake = None
        return self._queue.pop(0)

    def settle_later(self, cmd: QueuedCommand) -> None:
        """Keep ``cmd`` to be answered by the next :meth:`settle`."""
        self._settling.append(cmd)

    def settle(self, status: Callable[[], ProcessStatus]) -> None:
        """Answer the commands waiting for the slot to settle with ``status()``."""
        if self._settling:
            result = status()
            for cmd in self._settling:
                cmd.finish(result)
            self._settling.clear()

    def fail_pending(self, status: ProcessStatus) -> None:
        """Answer every command left when the slot's supervision ends."""
        for cmd in self._settling:  # launched: the stop that ended the slot settled them
            cmd.finish(status)
        for cmd in self._queue:  # never executed: only a stop is already done
            if cmd.kind == "stop":
                cmd.finish(status)
            else:
                cmd.finish(None, InvalidTransition(self._process, status.state.value, cmd.kind))
        self._settling.clear()
        self._queue.clear()
