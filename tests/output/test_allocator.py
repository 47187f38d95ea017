"""The allocator: free heap given back to the system at rest."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from supervisor.output import allocator

# Frees 80 MB of malloc'd blocks below one still in use (so glibc cannot trim them by
# itself), then prints the process's anonymous RSS before and after giving them back.
_PROBE = """
from supervisor.output.allocator import give_back_free_memory

def anon_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:"))

blocks = [bytes(4000) for _ in range(20000)]
pinned = bytes(4000)
del blocks
before = anon_kib()
give_back_free_memory()
print(before, anon_kib())
"""


def _has_malloc_trim() -> bool:
    try:
        ctypes.CDLL(None).malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return False
    return True


@pytest.mark.skipif(not _has_malloc_trim(), reason="glibc only")
def test_give_back_free_memory_returns_freed_heap_to_the_system() -> None:
    """What 500 spawns left free in the heap stayed resident for the node's whole life."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    before, after = map(int, out.split())
    assert before - after > 40_000  # KiB: at least half of the 80 MB freed


def test_give_back_free_memory_is_harmless_when_called_again() -> None:
    allocator.give_back_free_memory()
    allocator.give_back_free_memory()


# Allocates from a thread (blocks over 512 bytes go to glibc, not pymalloc), then prints
# how many arenas glibc reserved besides the main heap: 64 MiB each, mostly inaccessible.
_ARENAS = """
import sys, threading
from supervisor.output.allocator import share_one_arena

if sys.argv[1] == "one":
    share_one_arena()
kept = []
thread = threading.Thread(target=lambda: kept.append([bytes(1000) for _ in range(1000)]))
thread.start()
thread.join()
reserved = 0
with open("/proc/self/maps") as maps:
    for line in maps:
        span, perms, *rest = line.split()
        low, high = (int(x, 16) for x in span.split("-"))
        reserved += perms == "---p" and len(rest) == 3 and high - low > 32 << 20
print(reserved)
"""


def _thread_arenas(mode: str) -> int:
    argv = [sys.executable, "-c", _ARENAS, mode]
    return int(subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout)


@pytest.mark.skipif(not _has_malloc_trim(), reason="glibc only")
def test_share_one_arena_gives_a_thread_no_arena_of_its_own() -> None:
    """Each of a node's threads kept an arena whose pages stayed resident (0.5 MiB at rest)."""
    assert _thread_arenas("default") >= 1
    assert _thread_arenas("one") == 0
