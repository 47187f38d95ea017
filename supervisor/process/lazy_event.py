"""An event that makes its anyio.Event only when someone waits before it is set.

Each anyio.Event carries an asyncio.Event and a deque (about 0.9 KB); a fleet holds several
per process that are set long before anyone waits, or never waited for at all.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel


class LazyEvent:
    """``set``, ``is_set`` and ``wait`` as :class:`anyio.Event`, allocated on an early wait."""

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: anyio.Event | None = None

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._set = True
        if self._event is not None:
            self._event.set()

    def is_set(self) -> bool:
        """Whether :meth:`set` was called."""
        return self._set

    async def wait(self) -> None:
        """Return once set (at once, after a checkpoint, if it is)."""
        if self._set:
            await anyio.lowlevel.checkpoint()
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()
