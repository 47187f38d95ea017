"""A callback each time an fd is readable: one epoll set for them all on asyncio, a task elsewhere.

A fleet at rest holds a few fds per process that are rarely readable. A task waiting on each
costs about 3 KB, a reader of the asyncio loop (``loop.add_reader``) about 330 bytes (its handle,
copied context and selector key); in one epoll set the loop watches as one fd, an fd costs an
entry of a dict.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from typing import TYPE_CHECKING, Protocol

import anyio
from anyio.lowlevel import RunVar

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
    is an entry of the loop's :class:`_EpollSet` (a loop reader where epoll is
    missing) and ``tg`` is not used; elsewhere it runs in a task of ``tg`` that
    only :meth:`Reader.stop` ends (cancelling the caller does not).

    Args:
        fd: a non-blocking fd.
        callback: called with no argument; may call :meth:`Reader.stop` itself.
        tg: where the waiting task runs, off asyncio.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio (trio): no add_reader there
        return _TaskReader(fd, callback, tg)
    if not hasattr(select, "epoll"):
        return _LoopReader(loop, fd, callback)
    watched = _EPOLL_SET.get(None)
    if watched is None or not watched.is_open:
        watched = _EpollSet(loop)
        _EPOLL_SET.set(watched)
    return watched.add(fd, callback)


class _EpollSet:
    """The fds of one loop in one epoll set (level-triggered), which the loop reads as one fd.

    Made by the first reader of a loop and closed when its last reader stops.
    """

    __slots__ = ("_callbacks", "_epoll", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll = select.epoll()
        self._callbacks: dict[int, Callable[[], None]] = {}
        loop.add_reader(self._epoll.fileno(), self._dispatch)

    @property
    def is_open(self) -> bool:
        """False once the last reader stopped (a new set is made for the next one)."""
        return not self._epoll.closed

    def add(self, fd: int, callback: Callable[[], None]) -> _Watch:
        """Call ``callback`` while ``fd`` is readable (it replaces one ``fd`` had).

        An fd closed while watched left the set by itself (epoll forgets a closed
        file), so a reused fd number is registered again whatever the dict says.
        """
        with contextlib.suppress(FileExistsError):  # watched: the new callback replaces it
            self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback
        return _Watch(self, fd, callback)

    def remove(self, fd: int, callback: Callable[[], None]) -> None:
        """Stop calling ``callback`` for ``fd`` (nothing if another replaced it)."""
        if self._callbacks.get(fd) is not callback:
            return
        del self._callbacks[fd]
        with contextlib.suppress(OSError):  # closed already: epoll forgot it itself
            self._epoll.unregister(fd)
        if not self._callbacks:
            self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()

    def _dispatch(self) -> None:
        # Taken before any is called: one may stop another, or add a reader on a reused fd
        # whose new callback must not be called for the old fd's readiness.
        ready = [(fd, self._callbacks.get(fd)) for fd, _ in self._epoll.poll(0)]
        for fd, callback in ready:
            if callback is not None and self._callbacks.get(fd) is callback:
                callback()


class _Watch:
    __slots__ = ("_callback", "_fd", "_set")

    def __init__(self, watched: _EpollSet, fd: int, callback: Callable[[], None]) -> None:
        self._set: _EpollSet | None = watched
        self._fd = fd
        self._callback = callback

    def stop(self) -> None:
        if self._set is not None:
            self._set.remove(self._fd, self._callback)
            self._set = None


_EPOLL_SET: RunVar[_EpollSet] = RunVar("dsup.readable.epoll_set")


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
