"""Tests of the tree statistics on their own: what a measurement of the host keeps while it runs.

The figures themselves (memory, CPU, processes of real trees) are tested with the reaper.
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING

from supervisor.reaper.stats import TreeStats
from supervisor.reaper.tree import stat_fields

if TYPE_CHECKING:
    from collections.abc import Iterator


class _Line(list[bytes]):
    """A stat line whose life a test can follow (a plain list cannot be weakly referenced)."""


def test_tree_stats_keep_no_stat_line_of_the_host_once_read() -> None:
    """Each line of every process was held to the end: 50 small objects a process, megabytes
    of holes in the heap after each status of a big fleet."""
    held: list[weakref.ref[_Line]] = []
    most = 0

    def listing() -> Iterator[tuple[int, list[bytes]]]:
        nonlocal most
        for pid, fields in stat_fields():
            line = _Line(fields)
            held.append(weakref.ref(line))
            yield pid, line
            del line
            # The caller's loop still names the line it was given last.
            most = max(most, sum(ref() is not None for ref in held))

    me = os.getpid()
    stats = TreeStats(listing=listing).measure((me,))
    assert len(held) > 2  # this process, its parent, init at least
    assert most == 1
    assert stats[me].nprocs >= 1
    assert stats[me].rss > 0
