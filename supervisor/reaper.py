"""Process trees and orphans: the only module of dsup that imports psutil.

This module owns how dsup finds and ends processes beyond the one it spawned: the
tree of a run (descendants, its session, and every process carrying the run's
marker variables), the escalation from the stop signal to SIGKILL, the sweeps
that end what earlier runs or an earlier dsup left behind, zombie reaping for a
child subreaper, and per-tree stats. It does not own spawning, waiting for or
restarting the main process of a run (``child``), nor the ledger's storage
(``ledger``).

Rules (issue 3, "Orphans"):
- A process is identified by its pid AND its create_time (``ProcIdent``): the
  identity is checked again right before each signal, so a reused pid is never hit.
- The main process of a run is never waited for here: its exit status belongs to
  the child module. Zombies are reaped by pid, never with ``waitpid(-1)``.
- psutil is always called in a worker thread. ``NoSuchProcess``, ``ZombieProcess``
  and ``AccessDenied`` are normal outcomes, not errors.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import psutil

from supervisor.events import OrphansCleaned
from supervisor.ledger import ProcIdent

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Sequence

    from anyio.abc import TaskStatus

    from supervisor.events import Event
    from supervisor.ledger import Ledger

__all__ = [
    "MARKER_INSTANCE",
    "MARKER_NODE",
    "MARKER_PROCESS",
    "MARKER_PROGRAM",
    "MARKER_RUN_ID",
    "ProcIdent",
    "ProcStats",
    "Reaper",
    "TreeOutcome",
]

logger = logging.getLogger(__name__)

# Environment markers set on every spawn by the child module (issue 3). They are
# inherited by every descendant that does not clear its environment, so a
# descendant that left the tree and the session is still recognised.
MARKER_NODE = "DSUP_NODE"
MARKER_INSTANCE = "DSUP_INSTANCE"
MARKER_PROGRAM = "DSUP_PROGRAM"
MARKER_PROCESS = "DSUP_PROCESS"
MARKER_RUN_ID = "DSUP_RUN_ID"

_PR_SET_CHILD_SUBREAPER = 36
# psutil's epoch create_time is start ticks + the boot time of /proc/stat, a whole
# second that moves when the wall clock is stepped; a pid is never reused within
# a second of the same start time in practice.
_CTIME_TOLERANCE = 1.0
# Processes younger than this when a sweep or a zombie reaping begins are left for
# the next round: the caller's view of live runs and children may not include them
# yet (spawned in a thread, registered a moment later).
_SPARE_YOUNGER_THAN = 1.0
_KILL_WAIT = 5.0  # how long to wait for processes to vanish after SIGKILL
_POLL_MIN, _POLL_MAX = 0.005, 0.1


@dataclass(frozen=True, slots=True)
class TreeOutcome:
    """What a stop did.

    Attributes:
        signalled: pids sent the stop signal (the main's pid when its group was).
        killed: pids that needed SIGKILL.
        survivors: pids still alive after SIGKILL and a bounded wait.
    """

    signalled: tuple[int, ...]
    killed: tuple[int, ...]
    survivors: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcStats:
    """Resource use of one process tree (for status tables).

    Attributes:
        rss: resident memory in bytes, summed over the tree.
        cpu_percent: CPU use since the previous ``stats`` call, summed over the
            tree (100.0 is one core; 0.0 on the first call for a process).
        nprocs: number of processes in the tree, the root included.
    """

    rss: int
    cpu_percent: float
    nprocs: int


@dataclass(frozen=True, slots=True)
class _Seen:
    """One process in a snapshot; ``run_id`` is None unless it bears our instance marker."""

    ident: ProcIdent
    ppid: int
    sid: int | None
    run_id: str | None
    process: str


_Snapshot = dict[int, _Seen]


def _same_start(a: float, b: float) -> bool:
    return abs(a - b) <= _CTIME_TOLERANCE


class Reaper:
    """Finds and ends the processes of one dsup instance."""

    def __init__(
        self, *, instance_id: str, ledger: Ledger, spare_younger_than: float = _SPARE_YOUNGER_THAN
    ) -> None:
        """Create the reaper of one instance.

        Args:
            instance_id: this state_dir's id (the ``DSUP_INSTANCE`` marker).
            ledger: this state_dir's ledger.
            spare_younger_than: seconds; sweeps and zombie reaping leave younger
                processes for the next round (tests lower it).
        """
        self.instance_id = instance_id
        self.ledger = ledger
        self.spare_younger_than = spare_younger_than
        self._markers: dict[ProcIdent, tuple[str | None, str]] = {}
        self._scan_lock = anyio.Lock()
        self._last_scan: tuple[float, _Snapshot] | None = None
        self._cpu_lock = threading.Lock()
        self._cpu: dict[ProcIdent, psutil.Process] = {}

    def become_subreaper(self) -> bool:
        """Make this process a child subreaper (Linux), so orphans re-parent to it.

        Returns:
            True if the kernel accepted it; False on other systems or on failure.
        """
        if not sys.platform.startswith("linux"):
            return False
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            logger.warning("prctl(PR_SET_CHILD_SUBREAPER): %s", os.strerror(ctypes.get_errno()))
            return False
        logger.info("pid %d is now a child subreaper", os.getpid())
        return True

    async def identify(self, pid: int) -> ProcIdent | None:
        """The identity of a live process (None if it is gone)."""
        return await anyio.to_thread.run_sync(_identify, pid)

    # -- stopping -------------------------------------------------------------

    async def terminate_tree(
        self,
        main: ProcIdent,
        *,
        run_id: str,
        sig: signal.Signals,
        timeout: float,  # noqa: ASYNC109 - the grace before SIGKILL, not a deadline
        main_exited: anyio.Event,
    ) -> TreeOutcome:
        """Stop a run as a tree: ``sig`` to its group and members, then SIGKILL.

        Members are the descendants of ``main``, its session, every process
        bearing the run's markers and those the ledger recorded for the run;
        they are collected before the first signal and again before SIGKILL.
        ``main`` itself is never waited for: ``main_exited`` (set by its owner)
        says when it is gone. When nothing is left, the run is settled in the
        ledger.

        Args:
            main: the run's main process (spawned in its own session).
            run_id: the run's ``DSUP_RUN_ID``.
            sig: the stop signal.
            timeout: seconds to wait after ``sig`` before SIGKILL.
            main_exited: set by the main process's owner once it has exited.

        Returns:
            What was signalled, what needed SIGKILL, what survived.

        Cancellation stops the waiting and propagates; run this shielded.
        """
        recorded = await self._recorded(run_id)
        return await self._escalate(
            lambda snap: _run_members(snap, main, run_id, recorded),
            label=f"stop of run {run_id}",
            record_as=run_id,
            sig=sig,
            grace=timeout,
            main=main,
            main_exited=main_exited,
        )

    async def end_leftovers(
        self,
        main: ProcIdent,
        *,
        run_id: str,
        sig: signal.Signals,
        timeout: float,  # noqa: ASYNC109 - the grace before SIGKILL, not a deadline
    ) -> TreeOutcome:
        """Stop what a run left after its main process exited (already reaped).

        Same members and escalation as ``terminate_tree``, without the main.
        """
        recorded = await self._recorded(run_id)
        return await self._escalate(
            lambda snap: _run_members(snap, main, run_id, recorded),
            label=f"leftovers of run {run_id}",
            record_as=run_id,
            sig=sig,
            grace=timeout,
        )

    async def startup_sweep(
        self, *, sig: signal.Signals = signal.SIGTERM, grace: float = 5.0
    ) -> tuple[int, ...]:
        """End everything a previous life of this instance left behind.

        A recorded process is ended if its pid and create_time still match, or if
        the live process with its pid bears this instance's marker; every other
        process bearing the marker is ended too. A pid now used by an unrelated
        process is never touched. Runs are settled once nothing of them is left.

        Returns:
            The pids signalled.
        """
        leftovers = await anyio.to_thread.run_sync(self.ledger.leftover_processes)
        runs = {lo.run_id for lo in leftovers} | {
            r.run_id for r in await anyio.to_thread.run_sync(self.ledger.open_runs)
        }
        recorded = {lo.ident for lo in leftovers}
        mains = [lo for lo in leftovers if lo.is_main]

        def collect(snap: _Snapshot) -> set[ProcIdent]:
            found = _recorded_alive(snap, recorded)
            for lo in mains:
                found |= _run_members(snap, lo.ident, lo.run_id, recorded)
            # Every process bearing our marker, whatever its run: this covers a
            # recorded pid whose start time no longer matches but which is ours.
            return found | {s.ident for s in snap.values() if s.run_id is not None}

        outcome = await self._escalate(collect, label="startup sweep", sig=sig, grace=grace)
        if outcome.survivors:
            logger.error("startup sweep: pids %s survived SIGKILL", list(outcome.survivors))
        else:
            await anyio.to_thread.run_sync(self.ledger.forget_runs, runs)
        return outcome.signalled

    async def sweep(
        self,
        live_run_ids: Collection[str],
        *,
        sig: signal.Signals = signal.SIGTERM,
        grace: float = 5.0,
    ) -> tuple[int, ...]:
        """End processes of this instance that belong to no live run.

        Processes younger than ``spare_younger_than`` when the sweep begins are
        left for the next sweep (unless their run was found dead in this one),
        so a run spawned while the caller computed ``live_run_ids`` is safe.
        Also records, for each live run, the processes of its tree seen now, so
        that a later start-up finds them even if they clear their environment.

        Args:
            live_run_ids: every run that may legitimately have processes: from
                before its spawn until its stop has finished (and runs whose
                descendants are deliberately kept).
            sig: the first signal; SIGKILL follows after ``grace`` seconds.
            grace: seconds between ``sig`` and SIGKILL.

        Returns:
            The pids signalled.
        """
        live = frozenset(live_run_ids)
        mark = _clock_mark() - self.spare_younger_than
        snap = await self._snapshot()
        cutoff = await anyio.to_thread.run_sync(_on_psutil_scale, mark)
        await anyio.to_thread.run_sync(self._record_live, snap, live)
        leftovers = await anyio.to_thread.run_sync(self.ledger.leftover_processes)
        dead = {lo.ident for lo in leftovers if lo.run_id not in live}
        doomed: set[str] = set()  # runs found dead: their young processes go too

        def collect(snap: _Snapshot) -> set[ProcIdent]:
            found = {
                s
                for s in snap.values()
                if s.run_id is not None
                and s.run_id not in live
                and (s.ident.create_time <= cutoff or s.run_id in doomed)
            }
            doomed.update(s.run_id for s in found if s.run_id is not None)
            return {s.ident for s in found} | _recorded_alive(snap, dead)

        outcome = await self._escalate(collect, label="sweep", sig=sig, grace=grace, snap=snap)
        if not outcome.survivors:
            done = {r.run_id for r in await anyio.to_thread.run_sync(self.ledger.open_runs)}
            await anyio.to_thread.run_sync(self.ledger.forget_runs, done - live)
        return outcome.signalled

    # -- zombies, the periodic loop, stats ------------------------------------

    async def reap_zombies(self, known_children: Collection[int]) -> list[int]:
        """Reap zombies that are our direct children but not in ``known_children``.

        Only zombies created over a second before ``known_children`` was taken
        are reaped, so a child spawned meanwhile is never robbed of its status.

        Returns:
            The pids reaped.
        """
        cutoff = _clock_mark() - self.spare_younger_than
        return await anyio.to_thread.run_sync(_reap_zombies, frozenset(known_children), cutoff)

    async def serve(
        self,
        *,
        live_run_ids: Callable[[], Collection[str]],
        known_children: Callable[[], Collection[int]],
        interval: float,
        emit: Callable[[Event], None],
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Every ``interval`` seconds, reap stray zombies and sweep; runs until cancelled.

        Emits ``OrphansCleaned(reason="sweep")`` when a sweep ended something. A
        failed round is logged and the loop goes on.
        """
        task_status.started()
        while True:
            await anyio.sleep(interval)
            try:
                await self.reap_zombies(known_children())
                ended = await self.sweep(live_run_ids())
            except Exception:
                logger.exception("reaper sweep failed; trying again in %.1f s", interval)
                continue
            if ended:
                emit(OrphansCleaned(pids=ended, reason="sweep"))

    async def stats(self, pids: Sequence[int]) -> dict[int, ProcStats]:
        """Resource use of the tree rooted at each pid (gone pids are left out)."""
        return await anyio.to_thread.run_sync(self._stats, tuple(pids))

    # -- internals --------------------------------------------------------------

    async def _recorded(self, run_id: str) -> set[ProcIdent]:
        leftovers = await anyio.to_thread.run_sync(self.ledger.leftover_processes)
        return {lo.ident for lo in leftovers if lo.run_id == run_id and not lo.is_main}

    async def _snapshot(self) -> _Snapshot:
        """A snapshot of every process taken after this call began (scans are shared)."""
        asked = anyio.current_time()
        async with self._scan_lock:
            if self._last_scan is not None and self._last_scan[0] >= asked:
                return self._last_scan[1]
            started = anyio.current_time()
            snap = await anyio.to_thread.run_sync(self._scan)
            self._last_scan = (started, snap)
            return snap

    def _scan(self) -> _Snapshot:
        me = os.getpid()
        snap: _Snapshot = {}
        for proc in psutil.process_iter(["ppid", "create_time", "status"]):
            ctime = proc.info["create_time"]
            # A zombie is already dead: nothing to signal, only its parent may reap it.
            if proc.pid == me or ctime is None or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            ident = ProcIdent(proc.pid, ctime)
            marker = self._markers.get(ident)
            if marker is None:
                marker = self._read_marker(proc)
                self._markers[ident] = marker
            try:
                sid: int | None = os.getsid(proc.pid)
            except OSError:
                sid = None
            snap[proc.pid] = _Seen(ident, proc.info["ppid"] or 0, sid, *marker)
        # A process keeps its marker for life (an exec does not make it a stranger).
        self._markers = {s.ident: self._markers[s.ident] for s in snap.values()}
        return snap

    def _read_marker(self, proc: psutil.Process) -> tuple[str | None, str]:
        try:
            env = proc.environ()
        except psutil.Error:
            return (None, "")
        if env.get(MARKER_INSTANCE) != self.instance_id:
            return (None, "")
        return (env.get(MARKER_RUN_ID, ""), env.get(MARKER_PROCESS, "?"))

    def _record_live(self, snap: _Snapshot, live: frozenset[str]) -> None:
        per_run: dict[str, set[ProcIdent]] = {}
        for s in snap.values():
            if s.run_id is not None and s.run_id in live:
                per_run.setdefault(s.run_id, set()).update(_descendants(snap, s.ident.pid))
        for run_id, procs in per_run.items():
            self.ledger.record_descendants(run_id, sorted(procs, key=lambda p: p.pid))

    async def _escalate(
        self,
        collect: Callable[[_Snapshot], set[ProcIdent]],
        *,
        sig: signal.Signals,
        grace: float,
        label: str,
        record_as: str | None = None,
        main: ProcIdent | None = None,
        main_exited: anyio.Event | None = None,
        snap: _Snapshot | None = None,
    ) -> TreeOutcome:
        """Signal what ``collect`` finds, wait, collect again, SIGKILL what is left.

        ``label`` names the operation in logs; ``snap`` is a fresh snapshot to
        start from, if the caller has one.
        """

        def live_main() -> ProcIdent | None:
            running = main_exited is not None and not main_exited.is_set()
            return main if running else None

        snap = snap if snap is not None else await self._snapshot()
        targets = collect(snap)
        if record_as is not None and targets:
            await anyio.to_thread.run_sync(self.ledger.record_descendants, record_as, list(targets))
        signalled: list[int] = []
        killed: list[int] = []
        left: set[ProcIdent] = set()
        if targets or live_main() is not None:
            signalled = await anyio.to_thread.run_sync(
                self._signal, targets, sig, live_main(), f"{label}: {sig.name}", snap
            )
            remaining = await self._wait_gone(targets, main_exited, grace)
            snap = await self._snapshot()
            left = remaining | collect(snap)
        if left or live_main() is not None:
            killed = await anyio.to_thread.run_sync(
                self._signal, left, signal.SIGKILL, live_main(), f"{label}: SIGKILL", snap
            )
            left = await self._wait_gone(left, main_exited, _KILL_WAIT)
        survivors = sorted(p.pid for p in left)
        if (still := live_main()) is not None:
            survivors.insert(0, still.pid)
        if record_as is not None and not survivors:
            await anyio.to_thread.run_sync(self.ledger.forget_runs, [record_as])
        return TreeOutcome(tuple(signalled), tuple(killed), tuple(survivors))

    def _signal(
        self,
        targets: Iterable[ProcIdent],
        sig: signal.Signals,
        main: ProcIdent | None,
        why: str,
        snap: _Snapshot,
    ) -> list[int]:
        """Send ``sig`` to the group of a live ``main`` and to each target outside it.

        A process in the group gets the signal once, through the group: a second
        SIGINT could cut short the clean-up the first one started. Every pid is
        verified by its identity right before it is signalled.
        """
        sent: list[int] = []
        group = main.pid if main is not None else None
        if main is not None:
            try:
                os.killpg(main.pid, sig)
                logger.info("%s sent to process group %d", why, main.pid)
            except ProcessLookupError:
                # Not a group leader after all (spawned without a new session).
                group = None
                targets = [main, *targets]
            else:
                sent.append(main.pid)
        for ident in sorted(targets, key=lambda p: p.pid):
            proc = _verified(ident)
            if proc is None:
                continue
            try:
                in_group = group is not None and os.getpgid(ident.pid) == group
                if not in_group:
                    os.kill(ident.pid, sig)
            except ProcessLookupError:
                continue
            sent.append(ident.pid)
            seen = snap.get(ident.pid)
            logger.info(
                "%s sent to pid %d of %s (%s) %s%s",
                why,
                ident.pid,
                seen.process if seen is not None and seen.process else "no dsup process",
                _name(proc),
                _cmdline(proc),
                " via its group" if in_group else "",
            )
        return sent

    async def _wait_gone(
        self, targets: set[ProcIdent], main_exited: anyio.Event | None, limit: float
    ) -> set[ProcIdent]:
        """Wait up to ``limit`` s for ``targets`` to vanish and ``main_exited``; return the rest."""
        remaining = set(targets)
        delay = _POLL_MIN
        with anyio.move_on_after(limit):
            while True:
                remaining = await anyio.to_thread.run_sync(_still_alive, remaining)
                if not remaining:
                    if main_exited is not None:
                        await main_exited.wait()
                    break
                await anyio.sleep(delay)
                delay = min(delay * 2, _POLL_MAX)
        return await anyio.to_thread.run_sync(_still_alive, remaining)

    def _stats(self, pids: tuple[int, ...]) -> dict[int, ProcStats]:
        # One pass over /proc for all trees: children(recursive=True) per pid
        # would read every process once per tree.
        procs: dict[int, psutil.Process] = {}
        children: dict[int, list[int]] = {}
        for proc in psutil.process_iter(["ppid", "create_time"]):
            if proc.info["create_time"] is not None:
                procs[proc.pid] = proc
                children.setdefault(proc.info["ppid"] or 0, []).append(proc.pid)
        out: dict[int, ProcStats] = {}
        with self._cpu_lock:
            seen: dict[ProcIdent, psutil.Process] = {}
            for root in pids:
                if root not in procs:
                    continue
                rss, cpu, count = 0, 0.0, 0
                todo = [root]
                while todo:
                    fresh = procs.get(pid := todo.pop())
                    if fresh is None:
                        continue
                    todo.extend(children.get(pid, ()))
                    ident = ProcIdent(pid, fresh.info["create_time"])
                    # cpu_percent compares with the previous call on the same object.
                    proc = seen[ident] = self._cpu.get(ident, fresh)
                    try:
                        with proc.oneshot():
                            rss += proc.memory_info().rss
                            cpu += proc.cpu_percent(None)
                    except psutil.Error:
                        continue
                    count += 1
                out[root] = ProcStats(rss=rss, cpu_percent=cpu, nprocs=count)
            self._cpu.update(seen)
            self._cpu = {
                i: p
                for i, p in self._cpu.items()
                if i.pid in procs and procs[i.pid].info["create_time"] == i.create_time
            }
        return out


def _identify(pid: int) -> ProcIdent | None:
    try:
        return ProcIdent(pid, psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _verified(ident: ProcIdent) -> psutil.Process | None:
    """The live process with this identity, or None (gone, or pid reused)."""
    try:
        proc = psutil.Process(ident.pid)
        if _same_start(proc.create_time(), ident.create_time):
            return proc
    except psutil.Error:
        pass
    return None


def _descendants(snap: _Snapshot, pid: int) -> set[ProcIdent]:
    """``pid`` and everything below it in the snapshot's parent links."""
    children: dict[int, list[int]] = {}
    for seen in snap.values():
        children.setdefault(seen.ppid, []).append(seen.ident.pid)
    found: set[ProcIdent] = set()
    todo = [pid]
    while todo:
        cur = todo.pop()
        if (s := snap.get(cur)) is not None and s.ident not in found:
            found.add(s.ident)
            todo.extend(children.get(cur, ()))
    return found


def _run_members(
    snap: _Snapshot, main: ProcIdent, run_id: str, recorded: set[ProcIdent]
) -> set[ProcIdent]:
    """The live processes of one run, ``main`` excluded.

    Descendants of ``main`` (if it still lives), members of its session (only
    while its pid cannot belong to another session leader), processes bearing
    the run's marker, and recorded processes whose identity still matches.
    """
    seen_main = snap.get(main.pid)
    main_alive = seen_main is not None and _same_start(
        seen_main.ident.create_time, main.create_time
    )
    found = _descendants(snap, main.pid) if main_alive else set()
    sid_is_ours = seen_main is None or main_alive
    for s in snap.values():
        in_session = (
            sid_is_ours
            and s.sid == main.pid
            and s.ident.create_time >= main.create_time - _CTIME_TOLERANCE
        )
        if in_session or s.run_id == run_id:
            found.add(s.ident)
    found |= _recorded_alive(snap, recorded)
    return {p for p in found if p.pid != main.pid}


def _recorded_alive(snap: _Snapshot, recorded: Iterable[ProcIdent]) -> set[ProcIdent]:
    """The live snapshot identities of recorded processes whose start time matches."""
    return {
        s.ident
        for r in recorded
        if (s := snap.get(r.pid)) is not None and _same_start(s.ident.create_time, r.create_time)
    }


def _still_alive(idents: set[ProcIdent]) -> set[ProcIdent]:
    """Those of ``idents`` still running; our zombie children among them are reaped.

    The idents never include the main process of a run (collections exclude it),
    so reaping them cannot steal an exit status the child module waits for.
    """
    me = os.getpid()
    alive: set[ProcIdent] = set()
    for ident in idents:
        proc = _verified(ident)
        if proc is None:
            continue
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.add(ident)
            elif proc.ppid() == me:
                os.waitpid(ident.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            continue
    return alive


def _clock_mark() -> float:
    """Now, as seconds since boot (sampled on the event loop: no I/O)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _on_psutil_scale(mark: float) -> float:
    """A ``_clock_mark`` value on psutil's create_time scale (reads /proc/stat).

    psutil's create_time is start ticks since boot plus /proc/stat's whole-second
    boot time, so this is exact to a tick where ``time.time()`` is off by up to 1 s.
    """
    return mark + psutil.boot_time()


def _reap_zombies(known: frozenset[int], cutoff: float) -> list[int]:
    reaped: list[int] = []
    for child in psutil.Process().children():
        try:
            if (
                child.pid in known
                or child.status() != psutil.STATUS_ZOMBIE
                or child.create_time() > _on_psutil_scale(cutoff)
            ):
                continue
            pid, status = os.waitpid(child.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            continue
        if pid:
            reaped.append(pid)
            logger.info("reaped stray zombie pid %d (status %d)", pid, status)
    return reaped


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return "?"


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:200]
    except psutil.Error:
        return "?"
