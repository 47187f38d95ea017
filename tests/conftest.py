"""Shared fixtures: the anyio backend and the leak check every test runs under."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

import psutil
import pytest

from tests._wait import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

LEAK_GRACE_SECONDS = 5.0


@pytest.fixture
def anyio_backend() -> str:
    """discord.py is asyncio-only, so the whole suite runs on asyncio."""
    return "asyncio"


def _live_children(me: psutil.Process) -> set[int]:
    found = set()
    for child in me.children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                found.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    """Every test ends with no new child process and no new open fd.

    A child that is being reaped gets a short, bounded grace; a process or
    descriptor still there after it is a leak and fails the test.
    """
    me = psutil.Process()
    children = _live_children(me)
    fds = set(os.listdir("/proc/self/fd"))
    yield
    try:
        wait_for(lambda: not _live_children(me) - children, "children", seconds=LEAK_GRACE_SECONDS)
    except AssertionError:
        leaked = sorted(_live_children(me) - children)
        raise AssertionError(f"test left child processes behind: {leaked}") from None
    opened = set(os.listdir("/proc/self/fd")) - fds
    assert not opened, f"test left file descriptors open: {sorted(opened)}"


@pytest.fixture(autouse=True, scope="session")
def _interruptible_children() -> None:
    """Children start with SIGINT at its default, even under ``nohup`` or ``make test &``.

    A process started with SIGINT ignored keeps it ignored across exec, and Python
    then installs no KeyboardInterrupt handler: the ``dsup ctl`` a test interrupts
    would never notice. A handled signal is reset to its default by exec.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
