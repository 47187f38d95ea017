"""A callback each time an fd is readable: a loop reader on asyncio, a task elsewhere.

A fleet at rest holds a few fds per process that are rarely readable; a task waiting on each
costs about 3 KB, a reader registered with the asyncio loop (``loop.add_reader``) almost nothing.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine


class TaskStarter(Protocol):
    """Where a reader's task runs off asyncio: a task group, or what counts a run's tasks."""

    def start_soon(
        self, func: Callable[..., Coroutine[object, object, object]], *args: object
    ) -> object:
        """Run ``func(*args)`` in a new task (what it returns is not used)."""


class Reader(Protocol):
    """A registered callback; :meth:`stop` ends it."""

    def stop(self) -> None:
        """Call the callback no more (idempotent; the fd stays the caller's to close)."""


def call_when_readable(fd: int, callback: Callable[[], None], tg: TaskStarter) -> Reader:
    """Call ``callback()`` on the event loop each time ``fd`` is readable, until stopped.

    The callback must not raise (what it cannot handle it logs) and should read
    what it can: it is called again while the fd stays readable. On asyncio it
    is a loop reader and ``tg`` is not used; elsewhere it runs in a task of
    ``tg`` that only :meth:`Reader.stop` ends (cancelling the caller does not).

    Args:
        fd: a non-blocking fd.
        callback: called with no argument; may call :meth:`Reader.stop` itself.
        tg: where the waiting task runs, off asyncio.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio (trio): no add_reader there
        return _TaskReader(fd, callback, tg)
    return _LoopReader(loop, fd, callback)


class _LoopReader:
    __slots__ = ("_fd", "_loop")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, fd: int, callback: Callable[[], None]
    ) -> None:
        self._loop: asyncio.AbstractEventLoop | None = loop
        self._fd = fd
        loop.add_reader(fd, callback)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop = None


class _TaskReader:
    __slots__ = ("_scope",)

    def __init__(self, fd: int, callback: Callable[[], None], tg: TaskStarter) -> None:
        self._scope = anyio.CancelScope(shield=True)
        tg.start_soon(self._serve, fd, callback)

    async def _serve(self, fd: int, callback: Callable[[], None]) -> None:
        with self._scope:
            while True:
                await anyio.wait_readable(fd)
                callback()

    def stop(self) -> None:
        self._scope.cancel()
