"""Snapshots of the process table with dsup's markers, and which processes belong to a run.

A process's identity is (pid, create_time); membership is a pure function of a snapshot.
Snapshots and identities are read from /proc: psutil is loaded only to signal a process.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from supervisor.state.records import ProcIdent
from worker_sdk import protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Iterator

    import psutil

# Environment markers set on every spawn (process/run.py). They are
# inherited by every descendant that does not clear its environment, so a
# descendant that left the tree and the session is still recognised.

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Fields of /proc/PID/stat after the name (proc(5) numbers them from 1 with pid and name).
STATE, PPID, SESSION, UTIME, STIME, THREADS, START = 0, 1, 3, 11, 12, 17, 19
# psutil's epoch create_time is start ticks + the boot time of /proc/stat, a whole
# second that moves when the wall clock is stepped; a pid is never reused within
# a second of the same start time in practice.
_CTIME_TOLERANCE = 1.0
# What most processes of a snapshot hold as pipes: one set for all (216 bytes each, empty).
_NO_PIPES: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Seen:
    """One process in a snapshot; ``run_id`` is None unless it bears our instance marker."""

    ident: ProcIdent
    ppid: int
    sid: int | None
    run_id: str | None
    process: str
    pipes: frozenset[int] = _NO_PIPES
    """Inodes of the pipes it holds; read only for our unmarked direct children."""


Snapshot = dict[int, Seen]


class Scanner:
    """Takes snapshots of every process for one dsup instance, sharing them between callers."""

    def __init__(
        self,
        instance_id: str,
        *,
        listing: Callable[[], Iterable[tuple[int, list[bytes]]]] | None = None,
    ) -> None:
        """Create the scanner of one instance.

        Args:
            instance_id: the ``DSUP_INSTANCE`` marker that makes a process ours.
            listing: each process's pid and stat fields (default :func:`stat_fields`;
                tests pause a scan in it).
        """
        self.instance_id = instance_id
        self._listing = listing or stat_fields
        # What a copy of dsup between fork and exec shows: the block dsup started
        # with, the same for its whole life (setting a variable does not change it).
        self._own_environ = _environ_block("self")
        # The markers seen, owned by the scan thread (scans never overlap).
        self._markers: dict[ProcIdent, tuple[str | None, str]] = {}
        # What know() was told, from the event loop, until a scan takes it in.
        self._told: dict[ProcIdent, tuple[str | None, str]] = {}
        self._told_lock = threading.Lock()
        self._lock = anyio.Lock()
        self._last: tuple[float, Snapshot] | None = None
        self._callers = 0

    async def snapshot(self) -> Snapshot:
        """A snapshot of every process taken after this call began (scans are shared).

        The last one is kept while callers wait, for those that asked before it began;
        once none waits it is let go (a resting node held every process of the host).
        """
        asked = anyio.current_time()
        self._callers += 1
        try:
            async with self._lock:
                if self._last is not None and self._last[0] >= asked:
                    return self._last[1]
                started = anyio.current_time()
                snap = await anyio.to_thread.run_sync(self._scan)
                self._last = (started, snap)
                return snap
        finally:
            self._callers -= 1
            if not self._callers:
                self._last = None

    def know(self, ident: ProcIdent, run_id: str, process: str) -> None:
        """Take the markers of a process dsup spawned itself: its environment is not read.

        Safe while a scan runs in its thread: a scan that did not list the process
        leaves what it was told for the next one.
        """
        with self._told_lock:
            self._told[ident] = (run_id, process)

    def _take_told(self, ident: ProcIdent | None = None) -> dict[ProcIdent, tuple[str | None, str]]:
        """What know() was told: all of it (``ident`` None), or about ``ident`` only."""
        with self._told_lock:
            if ident is None:
                told, self._told = self._told, {}
                return told
            marker = self._told.pop(ident, None)
            return {} if marker is None else {ident: marker}

    def _scan(self) -> Snapshot:
        me = os.getpid()
        snap: Snapshot = {}
        boot = boot_time()
        # Told before this scan: listed now if alive, and forgotten below if not.
        self._markers.update(self._take_told())
        for pid, fields in self._listing():
            # A zombie is already dead: nothing to signal, only its parent may reap it.
            if pid == me or fields[STATE] == b"Z":
                continue
            # The very sum psutil makes, so that identities compare equal to its create_time.
            ident = ProcIdent(pid, float(fields[START]) / CLOCK_TICKS + boot)
            ppid, sid = int(fields[PPID]), int(fields[SESSION])
            if self._told:  # told while this scan runs (a look without the lock is enough)
                self._markers.update(self._take_told(ident))
            marker = self._markers.get(ident)
            if marker is None:
                try:
                    environ: bytes | None = _environ_block(pid)
                except OSError:  # gone, or not ours to read
                    environ = None
                if ppid == me and environ == self._own_environ:
                    # A spawn between fork and exec (long under load): a copy of dsup
                    # holding all its fds, the runs' pipes among them, and no markers
                    # yet. Neither a run's leftover nor an orphan: it is being spawned.
                    continue
                marker = self._marker_of(environ)
            self._markers[ident] = marker
            # An unmarked child of ours was adopted (we spawn only marked ones):
            # the pipes it holds tell which run's output it came from.
            pipes = _pipes(pid) if ppid == me and marker[0] is None else _NO_PIPES
            snap[pid] = Seen(ident, ppid, sid, *marker, pipes=pipes)
        # A process keeps its marker for life (an exec does not make it a stranger).
        self._markers = {s.ident: self._markers[s.ident] for s in snap.values()}
        return snap

    def _marker_of(self, environ: bytes | None) -> tuple[str | None, str]:
        """The run and process a raw environment marks for this instance (None: not ours)."""
        if environ is None:
            return (None, "")
        env = _parse_environ(environ)
        if env.get(protocol.INSTANCE) != self.instance_id:
            return (None, "")
        return (env.get(protocol.RUN_ID, ""), env.get(protocol.PROCESS, "?"))


def stat_fields() -> Iterator[tuple[int, list[bytes]]]:
    """Each process's pid and the fields of its ``/proc/PID/stat`` after the name.

    One open per process (psutil's ``process_iter`` took two, and ``getsid`` a
    system call more); a process gone meanwhile is skipped. Index the fields
    with :data:`STATE`, :data:`PPID`, :data:`SESSION`, :data:`START` and the others.
    """
    for name in os.listdir("/proc"):
        if name.isdigit() and (fields := _stat(name)) is not None:
            yield int(name), fields


def _stat(pid: int | str) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the name (None if the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except OSError:
        return None
    # The name, in parentheses, may hold spaces and parentheses itself.
    return data[data.rfind(b")") + 2 :].split()


def _parse_environ(raw: bytes) -> dict[str, str]:
    """A process's environment from its raw ``/proc/PID/environ``, as psutil's
    ``environ()`` reads it."""
    block = os.fsdecode(raw)
    env: dict[str, str] = {}
    for entry in block.split("\0"):
        if not entry:  # the end (what may follow is garbage)
            break
        key, sep, value = entry.partition("=")
        if sep and key:
            env[key] = value
    return env


def _environ_block(pid: int | str) -> bytes:
    """The raw ``/proc/PID/environ`` of a process (``"self"``: this one).

    Raises:
        OSError: the process is gone or its environment is not ours to read.
    """
    with open(f"/proc/{pid}/environ", "rb") as file:
        return file.read()


def boot_time() -> float:
    """The boot time in /proc/stat (whole seconds since the epoch), which psutil adds too."""
    with open("/proc/stat", "rb") as file:
        for line in file:
            if line.startswith(b"btime"):
                return float(line.split()[1])
    raise OSError("no btime line in /proc/stat")


def _pipes(pid: int) -> frozenset[int]:
    """The inodes of the pipes a process holds open (empty if it cannot be read)."""
    inodes: set[int] = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return _NO_PIPES
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith("pipe:["):
            inodes.add(int(target[6:-1]))
    return frozenset(inodes) if inodes else _NO_PIPES


def adopted(snap: Snapshot, owned: Collection[int]) -> set[ProcIdent]:
    """Processes our subreaper adopted that no run claims, with their descendants.

    That is every unmarked direct child of this process whose pid is not in
    ``owned`` (the main processes of runs), and what it started. Only a child
    subreaper may call this: elsewhere an unmarked child is not an orphan.
    """
    me = os.getpid()
    found: set[ProcIdent] = set()
    children = children_of(snap)
    for s in snap.values():
        if s.ppid == me and s.run_id is None and s.ident.pid not in owned:
            found |= descendants(snap, s.ident.pid, children)
    return found


def pipe_holders(snap: Snapshot, pipes: Collection[int]) -> set[ProcIdent]:
    """Adopted processes holding one of ``pipes`` (a run's output), with their descendants."""
    found: set[ProcIdent] = set()
    children = children_of(snap)
    for s in snap.values():
        if not s.pipes.isdisjoint(pipes):
            found |= descendants(snap, s.ident.pid, children)
    return found


def same_start(a: float, b: float) -> bool:
    """Whether two create_time values are the same start (within psutil's jitter)."""
    return abs(a - b) <= _CTIME_TOLERANCE


def identify(pid: int) -> ProcIdent | None:
    """The identity of a live process (None if it is gone), on psutil's create_time scale."""
    fields = _stat(pid)
    if fields is None:
        return None
    return ProcIdent(pid, float(fields[START]) / CLOCK_TICKS + boot_time())


def verified(ident: ProcIdent) -> psutil.Process | None:
    """The live process with this identity, or None (gone, or pid reused)."""
    import psutil  # here: only signalling a process needs it, a node at rest never loads it

    try:
        proc = psutil.Process(ident.pid)
        if same_start(proc.create_time(), ident.create_time):
            return proc
    except psutil.Error:
        pass
    return None


def children_of(snap: Snapshot) -> dict[int, list[int]]:
    """The snapshot's parent links, parent pid to child pids (for :func:`descendants`)."""
    children: dict[int, list[int]] = {}
    for seen in snap.values():
        children.setdefault(seen.ppid, []).append(seen.ident.pid)
    return children


def descendants(
    snap: Snapshot, pid: int, children: dict[int, list[int]] | None = None
) -> set[ProcIdent]:
    """``pid`` and everything below it in the snapshot's parent links.

    Args:
        children: :func:`children_of` the snapshot, when the caller asks for many pids.
    """
    if children is None:
        children = children_of(snap)
    found: set[ProcIdent] = set()
    todo = [pid]
    while todo:
        cur = todo.pop()
        if (s := snap.get(cur)) is not None and s.ident not in found:
            found.add(s.ident)
            todo.extend(children.get(cur, ()))
    return found


def run_members(
    snap: Snapshot,
    main: ProcIdent,
    run_id: str,
    recorded: set[ProcIdent],
    pipes: Collection[int] = (),
) -> set[ProcIdent]:
    """The live processes of one run, ``main`` excluded.

    Descendants of ``main`` (if it still lives), members of its session (only
    while its pid cannot belong to another session leader), processes bearing
    the run's marker, recorded processes whose identity still matches, and
    adopted processes holding one of the run's output ``pipes`` (and theirs).
    """
    seen_main = snap.get(main.pid)
    main_alive = seen_main is not None and same_start(seen_main.ident.create_time, main.create_time)
    found = descendants(snap, main.pid) if main_alive else set()
    sid_is_ours = seen_main is None or main_alive
    for s in snap.values():
        in_session = (
            sid_is_ours
            and s.sid == main.pid
            and s.ident.create_time >= main.create_time - _CTIME_TOLERANCE
        )
        if in_session or s.run_id == run_id:
            found.add(s.ident)
    found |= recorded_alive(snap, recorded)
    if pipes:
        found |= pipe_holders(snap, pipes)
    return {p for p in found if p.pid != main.pid}


def recorded_alive(snap: Snapshot, recorded: Iterable[ProcIdent]) -> set[ProcIdent]:
    """The live snapshot identities of recorded processes whose start time matches."""
    return {
        s.ident
        for r in recorded
        if (s := snap.get(r.pid)) is not None and same_start(s.ident.create_time, r.create_time)
    }


def clock_mark() -> float:
    """Now, as seconds since boot (sampled on the event loop: no I/O)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def on_psutil_scale(mark: float) -> float:
    """A ``clock_mark`` value on psutil's create_time scale (reads /proc/stat).

    psutil's create_time is start ticks since boot plus /proc/stat's whole-second
    boot time, so this is exact to a tick where ``time.time()`` is off by up to 1 s.
    """
    return mark + boot_time()
