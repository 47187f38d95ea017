"""A slot's mailbox: commands queued to the slot's task, taken one at a time, answered once.

Concurrent callers cannot interleave half-done transitions; whatever is left when the task
ends is answered there.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NoReturn

import anyio

from supervisor.errors import InvalidTransition

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

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
    """Commands to one slot, executed one at a time by the slot's task.

    Args:
        process: the slot's name ``program:index``, for errors.
    """

    def __init__(self, process: str) -> None:
        self._process = process
        self._queue: collections.deque[QueuedCommand] = collections.deque()
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
        if self._wake is not None:
            self._wake.set()
        await cmd.done.wait()
        if cmd.error is not None:
            raise cmd.error
        assert cmd.result is not None  # finish() gives a result or an error
        return cmd.result

    async def serve(self, execute: Callable[[QueuedCommand], Awaitable[None]]) -> NoReturn:
        """Execute the commands in order, for ever; a refusal answers the command.

        ``execute`` either answers the command, or hands it to :meth:`settle_later`.
        """
        while True:
            while not self._queue:
                self._wake = anyio.Event()
                await self._wake.wait()
            cmd = self._queue[0]
            try:
                await execute(cmd)
            except InvalidTransition as exc:
                cmd.finish(None, exc)
            self._queue.popleft()

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
        """Answer every command left when the slot's task ends."""
        for cmd in self._settling:  # launched: the stop that ended the slot settled them
            cmd.finish(status)
        for cmd in self._queue:  # never executed: only a stop is already done
            if cmd.kind == "stop":
                cmd.finish(status)
            else:
                cmd.finish(None, InvalidTransition(self._process, status.state.value, cmd.kind))
        self._settling.clear()
        self._queue.clear()
