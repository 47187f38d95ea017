"""Resource use of process trees for status tables: memory, CPU and process count.

It keeps the CPU times that percentages are measured against; it ends nothing.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor.reaper.tree import (
    CLOCK_TICKS,
    PPID,
    START,
    STIME,
    THREADS,
    UTIME,
    stat_fields,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcStats:
    """Resource use of one process tree (for status tables).

    Attributes:
        rss: resident memory in bytes, summed over the tree: a page shared by
            several processes (copy-on-write after a fork, libraries) counts
            once per process. Not PSS: ``smaps_rollup`` walks each process's
            page tables under its memory lock, 25 times the cost of
            ``memory_info`` (205 ms against 8 ms for 500 processes of 20 MiB).
        cpu_percent: CPU use since the previous ``stats`` call, summed over the
            tree (100.0 is one core; 0.0 on the first call for a process;
            never more than 100.0 per thread of a process).
        nprocs: number of processes in the tree, the root included.
    """

    rss: int
    cpu_percent: float
    nprocs: int


@dataclass(frozen=True, slots=True)
class _Sample:
    cpu_seconds: float  # user + system time used so far
    at: float  # time.monotonic() when read


_PAGE = os.sysconf("SC_PAGE_SIZE")
_Key = tuple[int, bytes]  # pid and start ticks: a process, whatever reuses its pid later
_Line = tuple[bytes, float, int]  # of a process's stat line: start ticks, CPU seconds, threads


class TreeStats:
    """Measures process trees; CPU use is relative to the previous measurement."""

    def __init__(
        self, *, listing: Callable[[], Iterable[tuple[int, list[bytes]]]] | None = None
    ) -> None:
        """Start with no previous measurement (thread-safe: one lock).

        Args:
            listing: each process's pid and stat fields (default :func:`stat_fields`).
        """
        self._listing = listing or stat_fields
        self._lock = threading.Lock()
        self._cpu: dict[_Key, _Sample] = {}

    def measure(self, pids: tuple[int, ...]) -> dict[int, ProcStats]:
        """Resource use of the tree rooted at each pid (gone pids are left out); blocks.

        One pass over ``/proc/PID/stat`` for all trees (the links, CPU times and
        threads), then ``statm`` for the memory of their members only: the
        values psutil's ``cpu_times()`` and ``memory_info().rss`` give. Of each
        process of the host only the few values a tree needs are kept while the
        pass runs: its whole line, some 50 small objects, held for every process
        until the end, left megabytes of holes in the heap after each status.
        """
        procs: dict[int, _Line] = {}
        children: dict[int, list[int]] = {}
        for pid, fields in self._listing():
            cpu = float(fields[UTIME]) / CLOCK_TICKS + float(fields[STIME]) / CLOCK_TICKS
            procs[pid] = (fields[START], cpu, int(fields[THREADS]))
            children.setdefault(int(fields[PPID]), []).append(pid)
        out: dict[int, ProcStats] = {}
        with self._lock:
            seen: dict[_Key, _Sample] = {}
            for root in pids:
                if root in procs:
                    out[root] = self._sum_tree(root, procs, children, seen)
            self._cpu.update(seen)
            self._cpu = {
                key: sample
                for key, sample in self._cpu.items()
                if key[0] in procs and procs[key[0]][0] == key[1]
            }
        return out

    def _sum_tree(
        self,
        root: int,
        procs: dict[int, _Line],
        children: dict[int, list[int]],
        seen: dict[_Key, _Sample],
    ) -> ProcStats:
        """Sum one tree; the CPU samples taken are added to ``seen``."""
        rss, cpu, count = 0, 0.0, 0
        todo = [root]
        while todo:
            line = procs.get(pid := todo.pop())
            if line is None:
                continue
            todo.extend(children.get(pid, ()))
            resident = _resident(pid)
            if resident is None:
                continue  # gone meanwhile
            start, used, threads = line
            key = (pid, start)
            sample = seen[key] = _Sample(used, time.monotonic())
            rss += resident
            cpu += _percent(self._cpu.get(key), sample, threads)
            count += 1
        return ProcStats(rss=rss, cpu_percent=cpu, nprocs=count)


def _resident(pid: int) -> int | None:
    """Resident bytes from ``/proc/PID/statm``, as psutil's ``memory_info().rss``.

    ``/proc/PID/stat`` has an RSS too, but it was seen tens of pages off the
    ``statm`` figure that psutil (and every tool) shows.
    """
    try:
        with open(f"/proc/{pid}/statm", "rb") as file:
            return int(file.read().split()[1]) * _PAGE
    except OSError:
        return None


def _percent(before: _Sample | None, after: _Sample, threads: int) -> float:
    """CPU use between two samples, at most 100 per thread (100 is one core).

    CPU times tick in whole jiffies (10 ms), so over a short window a busy
    thread can seem to use a little more than a core; that is cut off.
    """
    if before is None or after.at <= before.at:
        return 0.0
    used = (after.cpu_seconds - before.cpu_seconds) / (after.at - before.at) * 100.0
    return max(0.0, min(used, 100.0 * max(1, threads)))
