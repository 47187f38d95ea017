"""An event that costs a flag until someone waits, and one future per waiter on asyncio.

Each anyio.Event carries an asyncio.Event and a deque (about 0.9 KB, and two coroutines per
waiter); a fleet holds several per process, set long before anyone waits, or waited for by
the slot's one task for as long as the process runs.
"""

from __future__ import annotations

import asyncio

import anyio
import anyio.lowlevel


class LazyEvent:
    """``set``, ``is_set`` and ``wait`` as :class:`anyio.Event`, allocated on an early wait.

    On asyncio an early waiter awaits a future of its own (cancelling one waiter
    wakes no other); elsewhere the first early waiter makes an :class:`anyio.Event`.
    """

    __slots__ = ("_event", "_futures", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: anyio.Event | None = None
        self._futures: list[asyncio.Future[None]] | None = None

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._set = True
        if self._event is not None:
            self._event.set()
        for future in self._futures or ():
            if not future.done():
                future.set_result(None)

    def is_set(self) -> bool:
        """Whether :meth:`set` was called."""
        return self._set

    async def wait(self) -> None:
        """Return once set (at once, after a checkpoint, if it is).

        A cancelled waiter raises the cancellation and leaves the others waiting.
        """
        if self._set:
            await anyio.lowlevel.checkpoint()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio)
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()
            return
        future: asyncio.Future[None] = loop.create_future()
        if self._futures is None:
            self._futures = []
        self._futures.append(future)
        try:
            await future
        finally:
            self._futures.remove(future)
