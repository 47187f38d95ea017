"""glibc's malloc tuned once output floods, and its free memory given back once at rest.

Each read of a flooding pipe makes fresh buffers of about 1 MiB (the lines handed out, the
console's prefixed copy). By default glibc maps each one anew and gives freed memory back, so
every MiB costs 256 page faults: as much CPU as the copies themselves (bench/throughput.py).
What a start-up burst, a sweep or a flood freed stays in the heap until given back at rest.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 16 * 1024 * 1024
"""Allocations below this come from the heap and are reused once freed."""
TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024
"""Free memory kept at the top of the heap before it is given back to the system."""
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_tuned = False


def tune_for_floods() -> None:
    """Raise glibc's mmap and trim thresholds, once per process (later calls do nothing).

    Called by the pump at the first big read of a pipe: a node whose workers
    never flood keeps glibc's defaults. Memory freed after a flood stays in the
    heap (at most ``TRIM_THRESHOLD_BYTES`` of it) for the next one, until
    :func:`give_back_free_memory` returns it after a sweep. Without glibc
    (``mallopt`` missing) nothing changes.
    """
    global _tuned  # one switch for the process, as malloc's settings are
    if _tuned:
        return
    _tuned = True
    mallopt = _glibc("mallopt")
    if mallopt is None:
        logger.debug("no mallopt here: the allocator keeps its defaults")
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)


def share_one_arena() -> None:
    """Have every thread allocate from glibc's main arena (``M_ARENA_MAX`` = 1).

    Call it before the first thread starts. dsup's threads make short blocking calls
    (sqlite, /proc, log files) and the console writes from one; glibc gave each its own
    arena, whose pages (sqlite's page cache, a flood's buffers) stayed resident beside
    the main heap: about 0.5 MiB for the five threads of a node at rest. Without glibc
    nothing changes.
    """
    mallopt = _glibc("mallopt")
    if mallopt is None:
        logger.debug("no mallopt here: each thread may keep an arena of its own")
        return
    mallopt(_M_ARENA_MAX, 1)


def give_back_free_memory() -> None:
    """Return the heap's free pages to the system (glibc's ``malloc_trim``), in any arena.

    glibc gives back only free memory at the top of the main heap, past the trim
    threshold; what 500 spawns, a sweep's process table or a flood freed elsewhere
    stays resident. About a millisecond for a heap of tens of MiB: the fleet calls it
    after each sweep, in a thread. Without glibc nothing happens.
    """
    trim = _glibc("malloc_trim")
    if trim is not None:
        trim(0)


@functools.cache
def _glibc(name: str) -> Callable[..., int] | None:
    """glibc's function ``name`` (looked up once), or None without glibc."""
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    return function
