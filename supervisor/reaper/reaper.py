"""The reaper: ends process trees, sweeps leftovers of earlier runs, reaps stray zombies.

A process is known by pid and create_time, so a reused pid is never hit. This package is the
only psutil importer, and it calls psutil in a thread.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

import anyio

from supervisor.events import OrphansCleaned
from supervisor.reaper.stats import ProcStats, TreeStats
from supervisor.reaper.stop import ExitFlag, TreeOutcome, escalate
from supervisor.reaper.tree import (
    Scanner,
    adopted,
    children_of,
    clock_mark,
    descendants,
    identify,
    on_psutil_scale,
    recorded_alive,
    run_members,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Collection, Sequence

    from anyio.abc import TaskStatus

    from supervisor.events import Event
    from supervisor.reaper.tree import Snapshot
    from supervisor.state.ledger import Ledger
    from supervisor.state.records import ProcIdent

logger = logging.getLogger(__name__)

_PR_SET_CHILD_SUBREAPER = 36
# Processes younger than this when a sweep or a zombie reaping begins are left for
# the next round: the caller's view of live runs and children may not include them
# yet (spawned in a thread, registered a moment later).
_SPARE_YOUNGER_THAN = 1.0


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
        self._scanner = Scanner(instance_id)
        self._tree_stats = TreeStats()
        self._is_subreaper = False
        # What the sweeps recorded of each live run's tree, so a sweep writes only news: a
        # tuple, as most trees are their main process alone (a frozenset of one is 216 bytes).
        self._recorded: dict[str, tuple[ProcIdent, ...]] = {}

    def become_subreaper(self) -> bool:
        """Make this process a child subreaper (Linux), so orphans re-parent to it.

        Returns:
            True if the kernel accepted it; False on other systems or on failure.
        """
        if not sys.platform.startswith("linux"):
            return False
        libc = ctypes.CDLL(None, use_errno=True)  # the C library already loaded, no ldconfig
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            logger.warning("prctl(PR_SET_CHILD_SUBREAPER): %s", os.strerror(ctypes.get_errno()))
            return False
        logger.info("pid %d is now a child subreaper", os.getpid())
        self._is_subreaper = True
        return True

    async def identify(
        self, pid: int, *, run_id: str | None = None, process: str = "?"
    ) -> ProcIdent | None:
        """The identity of a live process (None if it is gone).

        Args:
            pid: the process.
            run_id: given for a run's main process just spawned, with its
                ``process`` name: dsup set its markers, so sweeps need not read
                its environment, and the ledger records it as the run's main,
                so sweeps need not record it again.
        """
        ident = await anyio.to_thread.run_sync(identify, pid)
        if ident is not None and run_id is not None:
            self._scanner.know(ident, run_id, process)
            self._recorded[run_id] = (ident,)
        return ident

    # -- stopping -------------------------------------------------------------

    async def terminate_tree(
        self,
        main: ProcIdent,
        *,
        run_id: str,
        sig: signal.Signals,
        timeout: float,  # noqa: ASYNC109 - the grace before SIGKILL, not a deadline
        main_exited: ExitFlag,
        pipes: Collection[int] = (),
    ) -> TreeOutcome:
        """Stop a run as a tree: ``sig`` to its group and members, then SIGKILL.

        Members are the descendants of ``main``, its session, every process
        bearing the run's markers, those the ledger recorded for the run and
        those the subreaper adopted that hold one of the run's output ``pipes``;
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
            pipes: the inodes of the run's stdout and stderr pipes.

        Returns:
            What was signalled, what needed SIGKILL, what survived.

        Cancellation stops the waiting and propagates; run this shielded.
        """
        return await self._stop_run(
            main,
            run_id,
            label="stop of run",
            sig=sig,
            grace=timeout,
            main_exited=main_exited,
            pipes=pipes,
        )

    async def end_leftovers(
        self,
        main: ProcIdent,
        *,
        run_id: str,
        sig: signal.Signals,
        timeout: float,  # noqa: ASYNC109 - the grace before SIGKILL, not a deadline
        pipes: Collection[int] = (),
    ) -> TreeOutcome:
        """Stop what a run left after its main process exited (already reaped).

        Same members and escalation as ``terminate_tree``, without the main.
        """
        return await self._stop_run(
            main, run_id, label="leftovers of run", sig=sig, grace=timeout, pipes=pipes
        )

    async def startup_sweep(
        self, *, sig: signal.Signals = signal.SIGTERM, grace: float = 5.0
    ) -> tuple[int, ...]:
        """End everything a previous life of this instance left behind.

        A recorded process (of a run, or adopted by the previous life's
        subreaper) is ended if its pid and create_time still match, or if the
        live process with its pid bears this instance's marker; every other
        process bearing the marker is ended too. A pid now used by an unrelated
        process is never touched. Runs are settled once nothing of them is left.

        Returns:
            The pids signalled.
        """
        leftovers = await anyio.to_thread.run_sync(self.ledger.leftover_processes)
        runs = {lo.run_id for lo in leftovers} | {
            r.run_id for r in await anyio.to_thread.run_sync(self.ledger.open_runs)
        }
        orphans = await anyio.to_thread.run_sync(self.ledger.adopted_processes)
        recorded = {lo.ident for lo in leftovers} | set(orphans)
        mains = [lo for lo in leftovers if lo.is_main]

        def collect(snap: Snapshot) -> set[ProcIdent]:
            found = recorded_alive(snap, recorded)
            for lo in mains:
                found |= run_members(snap, lo.ident, lo.run_id, recorded)
            # Every process bearing our marker, whatever its run: this covers a
            # recorded pid whose start time no longer matches but which is ours.
            return found | {s.ident for s in snap.values() if s.run_id is not None}

        outcome = await escalate(
            self._scanner, self.ledger, collect, label="startup sweep", sig=sig, grace=grace
        )
        if outcome.survivors:
            logger.error("startup sweep: pids %s survived SIGKILL", list(outcome.survivors))
        else:
            await anyio.to_thread.run_sync(self.ledger.forget_runs, runs)
            await anyio.to_thread.run_sync(self.ledger.forget_adopted, orphans)
        return outcome.signalled

    async def sweep(
        self,
        live_run_ids: Collection[str],
        *,
        owned: Collection[int] = (),
        is_last: bool = False,
        sig: signal.Signals = signal.SIGTERM,
        grace: float = 5.0,
    ) -> tuple[int, ...]:
        """End processes of this instance that belong to no live run.

        Processes younger than ``spare_younger_than`` when the sweep begins are
        left for the next sweep (unless their run was found dead in this one),
        so a run spawned while the caller computed ``live_run_ids`` is safe.
        Also records, for each live run, the processes of its tree seen now, so
        that a later start-up finds them even if they clear their environment.
        A child subreaper also ends what it adopted that no run claims (no
        marker of a live run, not recorded for one, not in ``owned``): such a
        process descends from one of our runs, whatever it did to its
        environment and session. They are recorded first, so that if dsup dies
        before they do, its next start ends them.

        Args:
            live_run_ids: every run that may legitimately have processes: from
                before its spawn until its stop has finished (and runs whose
                descendants are deliberately kept).
            owned: the pids of the live runs' main processes.
            is_last: no run will start any more (the sweep of a shutdown):
                young processes are not spared.
            sig: the first signal; SIGKILL follows after ``grace`` seconds.
            grace: seconds between ``sig`` and SIGKILL.

        Returns:
            The pids signalled.
        """
        live = frozenset(live_run_ids)
        # Records a full disk refused are written once it takes them, even if idle.
        await anyio.to_thread.run_sync(self.ledger.retry_deferred)
        mark = clock_mark() - (0.0 if is_last else self.spare_younger_than)
        snap = await self._scanner.snapshot()
        cutoff = await anyio.to_thread.run_sync(on_psutil_scale, mark)
        await anyio.to_thread.run_sync(self._record_live, snap, live)
        leftovers = await anyio.to_thread.run_sync(self.ledger.leftover_processes)
        dead = {lo.ident for lo in leftovers if lo.run_id not in live}
        kept = {lo.ident for lo in leftovers if lo.run_id in live}
        doomed: set[str] = set()  # runs found dead: their young processes go too

        def unclaimed(snap: Snapshot) -> set[ProcIdent]:
            if not self._is_subreaper:
                return set()
            spared = recorded_alive(snap, kept)
            return {
                p
                for p in adopted(snap, owned)
                if p.create_time <= cutoff and p not in spared and snap[p.pid].run_id not in live
            }

        def collect(snap: Snapshot) -> set[ProcIdent]:
            found = {
                s
                for s in snap.values()
                if s.run_id is not None
                and s.run_id not in live
                and (s.ident.create_time <= cutoff or s.run_id in doomed)
            }
            doomed.update(s.run_id for s in found if s.run_id is not None)
            return {s.ident for s in found} | recorded_alive(snap, dead) | unclaimed(snap)

        orphans = sorted(unclaimed(snap), key=lambda p: p.pid)
        if orphans:
            await anyio.to_thread.run_sync(self.ledger.record_adopted, orphans)
        outcome = await escalate(
            self._scanner, self.ledger, collect, label="sweep", sig=sig, grace=grace, snap=snap
        )
        if orphans:
            gone = [p for p in orphans if p.pid not in outcome.survivors]
            await anyio.to_thread.run_sync(self.ledger.forget_adopted, gone)
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
        cutoff = clock_mark() - self.spare_younger_than
        return await anyio.to_thread.run_sync(_reap_zombies, frozenset(known_children), cutoff)

    async def serve(
        self,
        *,
        live_run_ids: Callable[[], Collection[str]],
        known_children: Callable[[], Collection[int]],
        interval: float,
        emit: Callable[[Event], None],
        after_sweep: Callable[[], object] | None = None,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Reap stray zombies when children die, and sweep every ``interval`` seconds.

        Runs until cancelled. An adopted orphan that dies is reaped soon after its
        SIGCHLD (once it is older than ``spare_younger_than``), not only at the
        next sweep. Emits ``OrphansCleaned(reason="sweep")`` when a sweep ended
        something. A failed round is logged and the loop goes on. ``after_sweep``
        is called in a thread after each round (the fleet gives back free memory).
        """
        async with anyio.create_task_group() as tg:
            await tg.start(self._reap_on_sigchld, known_children)
            task_status.started()
            while True:
                await anyio.sleep(interval)
                try:
                    await self.reap_zombies(known_children())
                    ended = await self.sweep(live_run_ids(), owned=known_children())
                except Exception:
                    logger.exception("reaper sweep failed; trying again in %.1f s", interval)
                    ended = ()
                if after_sweep is not None:
                    await anyio.to_thread.run_sync(after_sweep)
                if ended:
                    emit(OrphansCleaned(pids=ended, reason="sweep"))

    async def _reap_on_sigchld(
        self,
        known_children: Callable[[], Collection[int]],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Reap stray zombies after each burst of SIGCHLD, at most once a second."""
        pending = anyio.Event()

        async def note(signals: AsyncIterator[signal.Signals]) -> None:
            async for _ in signals:
                pending.set()

        with anyio.open_signal_receiver(signal.SIGCHLD) as signals:
            async with anyio.create_task_group() as tg:
                tg.start_soon(note, signals)
                task_status.started()
                while True:
                    await pending.wait()
                    pending = anyio.Event()
                    # A zombie younger than spare_younger_than is left alone (it may
                    # be a spawn whose watcher is not set up yet): wait that long.
                    await anyio.sleep(max(self.spare_younger_than, 0.0) + 1.0)
                    try:
                        await self.reap_zombies(known_children())
                    except Exception:
                        logger.exception("reaping zombies failed; trying at the next SIGCHLD")

    async def stats(self, pids: Sequence[int]) -> dict[int, ProcStats]:
        """Resource use of the tree rooted at each pid (gone pids are left out)."""
        return await anyio.to_thread.run_sync(self._tree_stats.measure, tuple(pids))

    # -- internals --------------------------------------------------------------

    async def _stop_run(
        self,
        main: ProcIdent,
        run_id: str,
        *,
        label: str,
        sig: signal.Signals,
        grace: float,
        main_exited: ExitFlag | None = None,
        pipes: Collection[int] = (),
    ) -> TreeOutcome:
        """Escalate over the members of one run; record them, settle the run if all end.

        ``main`` is signalled (through its group) only while ``main_exited`` is
        given and not set.
        """
        leftovers = await anyio.to_thread.run_sync(self.ledger.leftover_processes, run_id)
        recorded = {lo.ident for lo in leftovers if not lo.is_main}
        return await escalate(
            self._scanner,
            self.ledger,
            lambda snap: run_members(snap, main, run_id, recorded, pipes),
            label=f"{label} {run_id}",
            record_as=run_id,
            sig=sig,
            grace=grace,
            main=main,
            main_exited=main_exited,
        )

    def _record_live(self, snap: Snapshot, live: frozenset[str]) -> None:
        """Record each live run's tree as seen now; only what earlier sweeps did not record."""
        per_run: dict[str, set[ProcIdent]] = {}
        children = children_of(snap)
        for s in snap.values():
            if s.run_id is not None and s.run_id in live:
                per_run.setdefault(s.run_id, set()).update(descendants(snap, s.ident.pid, children))
        recorded = {run_id: self._recorded.get(run_id, ()) for run_id in per_run}
        for run_id, procs in per_run.items():
            new = sorted(procs.difference(recorded[run_id]), key=lambda p: p.pid)
            if new:
                self.ledger.record_descendants(run_id, new)
                recorded[run_id] = (*recorded[run_id], *new)
        self._recorded = recorded  # runs gone from the snapshot are forgotten


def _reap_zombies(known: frozenset[int], cutoff: float) -> list[int]:
    if not _zombie_child():
        return []
    import psutil  # here: only a stray zombie needs it, a node at rest never loads it

    reaped: list[int] = []
    for child in psutil.Process().children():
        try:
            if (
                child.pid in known
                or child.status() != psutil.STATUS_ZOMBIE
                or child.create_time() > on_psutil_scale(cutoff)
            ):
                continue
            pid, status = os.waitpid(child.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            continue
        if pid:
            reaped.append(pid)
            logger.info("reaped stray zombie pid %d (status %d)", pid, status)
    return reaped


def _zombie_child() -> bool:
    """Whether any child has exited and awaits reaping (a cheap look, nothing is reaped).

    ``waitid(WNOWAIT)`` answers without reading every child from /proc: at rest,
    with hundreds of live children and no zombie, the full pass is skipped.
    """
    try:
        found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False  # no children at all
    return found is not None
