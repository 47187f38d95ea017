"""Bounded waiting for tests: poll a condition that has no event to await.

Every wait has a deadline and fails with what it waited for; none of them is a
sleep standing in for synchronisation.
"""

from __future__ import annotations

import fcntl
import os
import time
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

DEFAULT_SECONDS = 20.0


def wait_for(condition: Callable[[], bool], what: str, *, seconds: float = DEFAULT_SECONDS) -> None:
    """Block until ``condition()`` is true; raise AssertionError after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.02)


async def wait_until(check: Callable[[], bool], *, seconds: float = 10.0) -> None:
    """Poll ``check`` until it is true; fail after ``seconds``.

    For conditions that change in other tasks or processes with no event to await.
    """
    with anyio.fail_after(seconds):
        while not check():  # noqa: ASYNC110 - no event exists for these conditions
            await anyio.sleep(0.02)


async def eventually(probe: Callable[[], Awaitable[bool]], *, seconds: float = 10.0) -> None:
    """Await ``probe`` until it returns true; fail after ``seconds``."""
    with anyio.fail_after(seconds):
        while not await probe():  # noqa: ASYNC110 - the condition is outside this process
            await anyio.sleep(0.05)


class Gate:
    """A file that worker processes wait behind until the test opens it.

    Shut from creation: the test holds an exclusive ``flock`` on ``path``. A worker
    blocks in ``flock(LOCK_SH)`` on it (no polling); :meth:`open` lets every waiter
    through at once, and any later one straight away. Leaving the ``with`` opens it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def open(self) -> None:
        """Let the waiters through (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.open()
