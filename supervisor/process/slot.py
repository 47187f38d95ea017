"""One slot ``program:index`` across its runs: spawns, restarts by policy, stops as a tree.

The slot's work (a start, a stop, a backoff, commands one at a time) runs in a task only while
there is some; at rest (its run STARTING or RUNNING, or none) it has none, and its run's exit, its
``start_seconds`` timer or a command moves it on. A run's exit watcher and pumps are loop readers.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from supervisor import signals
from supervisor.errors import InvalidTransition, SpawnError
from supervisor.events import ProcessState
from supervisor.process import policy
from supervisor.process.lazy_event import LazyEvent
from supervisor.process.mailbox import Mailbox
from supervisor.process.run import Run, spawn
from supervisor.process.state import SlotState

if TYPE_CHECKING:
    import signal
    from collections.abc import Callable
    from pathlib import Path

    from anyio.abc import TaskGroup, TaskStatus

    from supervisor.config.schema import ProgramSpec
    from supervisor.events import Event
    from supervisor.output.pump import OutputConsumer
    from supervisor.process.mailbox import Kind
    from supervisor.process.questions import QuestionDesk
    from supervisor.process.status import ProcessStatus
    from supervisor.process.worker_link import TaskBroker, WorkerLink
    from supervisor.reaper.reaper import Reaper
    from supervisor.state.ledger import Ledger
    from supervisor.state.worker_store import WorkerStore

logger = logging.getLogger(__name__)

STOP_MARGIN_SECONDS = 5.0  # a stop may take stop_timeout_seconds plus this
PIPE_GRACE_SECONDS = 1.0  # output still captured after the main process exited (then EPIPE)
CATCH_UP_SECONDS = 0.25  # the most an exit waits for output already in the pipes
KEPT_RUNS = 64  # runs whose kept descendants a slot vouches for (keep_descendants)
# A start or restart command is answered when the slot reaches one of these.
_SETTLED = frozenset(ProcessState) - {ProcessState.STARTING, ProcessState.STOPPING}


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotContext:
    """What every slot of a fleet shares.

    Attributes:
        node: the node name (``DSUP_NODE``).
        instance_id: this state_dir's instance id (``DSUP_INSTANCE``).
        log_dir: where ``program-index.out.log`` / ``.err.log`` go.
        ledger: the run history (written before a run is reported STARTING).
        reaper: ends process trees and leftovers.
        emit: takes every ``StateChanged``; must not block.
        lines: takes framed output lines.
        clock: monotonic seconds for run durations, on anyio's time line.
        desk: the node's open questions; with ``store``, gives each run a
            channel to dsup (``DSUP_FD``); without, runs get none.
        store: where workers' results and questions are recorded.
        tasks: where workers give tasks, and those of stream programs take them.
        secrets: variables of dsup's environment no worker gets (the bot token's).
    """

    node: str
    instance_id: str
    log_dir: Path
    ledger: Ledger
    reaper: Reaper
    emit: Callable[[Event], None]
    lines: OutputConsumer
    clock: Callable[[], float] = anyio.current_time
    desk: QuestionDesk | None = None
    store: WorkerStore | None = None
    tasks: TaskBroker | None = None
    secrets: frozenset[str] = frozenset()


class Slot:
    """One process slot ``program:index`` for the lifetime of its supervision (:meth:`launch`).

    Args:
        spec: the program.
        index: 0 .. numprocs-1.
        ctx: what the fleet shares.
    """

    __slots__ = (
        "_busy",
        "_closed",
        "_commands",
        "_ctx",
        "_end_reason",
        "_ended",
        "_kept",
        "_on_begun",
        "_restart_wait",
        "_scope",
        "_state",
        "_stop_reason",
        "_supervising",
        "_tg",
        "_up_timer",
        "index",
        "name",
    )

    def __init__(self, spec: ProgramSpec, index: int, ctx: SlotContext) -> None:
        self.index = index
        self.name = f"{spec.name}:{index}"
        self._ctx = ctx
        self._state = SlotState(
            spec, process=self.name, index=index, emit=ctx.emit, on_change=self._changed
        )
        self._commands = Mailbox(self.name, on_queued=self._queued)
        self._supervising: anyio.CancelScope | None = None  # a supervision once launched
        self._stop_reason: str | None = None
        self._end_reason = "no longer supervised"
        self._closed = False
        self._restart_wait: anyio.CancelScope | None = None  # a pending restart by policy
        self._kept: collections.deque[str] | None = None  # made at the first kept run
        self._tg: TaskGroup | None = None  # where the slot works, once launched
        self._busy = False  # a task of the slot's work is under way (or about to start)
        self._on_begun: Callable[[], None] | None = None  # until the first start has begun
        self._scope: anyio.CancelScope | None = None  # the work under way; ``close`` cancels it
        self._ended = LazyEvent()  # the supervision has ended
        self._up_timer: asyncio.TimerHandle | None = None  # STARTING: when the run counts as up

    def __repr__(self) -> str:
        return f"<Slot {self.name} {self._state.state.value}>"

    @property
    def spec(self) -> ProgramSpec:
        """The program, as last given to the constructor or :meth:`update_spec`."""
        return self._state.spec

    def live_run_ids(self) -> set[str]:
        """Runs whose processes may legitimately be alive (for the reaper's sweep).

        The current run from its spawn until its tree is handled, plus, with
        ``keep_descendants``, the last :data:`KEPT_RUNS` runs that ended by
        themselves, whose descendants are kept on purpose.
        """
        run = self._state.run
        return {*(self._kept or ()), *([run.run_id] if run is not None else [])}

    def status(self) -> ProcessStatus:
        """Return a snapshot of this slot."""
        return self._state.status()

    # -- commands --------------------------------------------------------------

    async def start(self, *, reason: str = "") -> ProcessStatus:
        """Start from STOPPED, EXITED, FATAL or BACKOFF, with a fresh failure count.

        Returns:
            The status once RUNNING, or BACKOFF/FATAL/EXITED when the start
            failed (STOPPED if a concurrent stop won). A cancelled caller does
            not cancel the command.

        Raises:
            InvalidTransition: the process is alive, or the slot is no longer run.
        """
        return await self._submit("start", reason or "started by request")

    async def stop(self, *, reason: str = "") -> ProcessStatus:
        """Stop the whole tree; returns once STOPPED (a no-op when STOPPED)."""
        return await self._submit("stop", reason or "stopped by request")

    async def restart(self, *, reason: str = "") -> ProcessStatus:
        """Stop (if alive) and start again; returns as :meth:`start` does."""
        return await self._submit("restart", reason or "restarted by request")

    def send_signal(self, sig: signal.Signals | int) -> None:
        """Send ``sig`` (any number, real-time signals too) to the main process's group.

        Raises:
            InvalidTransition: no live main process.
        """
        run, state = self._state.run, self._state.state
        if run is None or run.exited.is_set() or not state.is_alive:
            raise InvalidTransition(self.name, state.value, f"send {signals.name(sig)}")
        try:
            os.killpg(run.pid, sig)
        except ProcessLookupError:
            name = signals.name(sig)
            logger.debug("%s (pid %d): group already gone for %s", self.name, run.pid, name)

    def close(self, reason: str | None = None) -> None:
        """End the supervision of this slot: stop the live run, then end.

        The stop of the live run (STOPPING, STOPPED) or the end of a BACKOFF
        wait gives ``reason`` ("dsup shutting down", "removed by reload").
        Commands submitted after this are refused as after the end of ``run``;
        :meth:`wait_ended` returns once the supervision has ended.

        Args:
            reason: a short human explanation; by default "no longer
                supervised", the reason of a cancelled caller.
        """
        if reason is not None:
            self._end_reason = reason
        self._closed = True
        if self._scope is not None:
            self._scope.cancel(self._end_reason)
        else:
            self._wake()  # at rest: work that stops the run it rests with, and ends

    async def wait_ended(self) -> None:
        """Return once the supervision has ended (after :meth:`close`, or a cancellation)."""
        await self._ended.wait()

    def update_spec(self, spec: ProgramSpec) -> None:
        """Take a reloaded program's settings without touching the process.

        Stop, restart and backoff settings and ``keep_descendants`` apply from
        the next stop or decision (a pending restart by policy that ``restart``
        no longer wants is cancelled: the process stays EXITED), the log
        sizes at once to the current run's files, ``start_seconds`` and
        ``max_line_bytes`` from the next run; so do ``command``, ``cwd``,
        ``env`` and ``unbuffered``, for which the fleet restarts a live
        process itself.

        Args:
            spec: the same program (name and ``numprocs`` may differ), as reloaded.
        """
        self._state.reload(spec)
        st = self._state.status()
        wait = self._restart_wait
        if wait is not None and not policy.wants_restart(
            spec, st.last_exit_code, st.last_exit_signal
        ):
            wait.cancel()  # the restart it waits for is no longer wanted
        if self._state.run is not None:
            for log in self._state.run.logs:
                log.resize(max_bytes=spec.log_max_bytes, backups=spec.log_backups)

    async def _submit(self, kind: Kind, reason: str) -> ProcessStatus:
        if self._closed:
            if kind == "stop":
                return self.status()
            raise InvalidTransition(self.name, self._state.state.value, f"{kind}: not supervised")
        return await self._commands.submit(kind, reason)

    def _queued(self) -> None:
        """A command was queued: it interrupts the supervision under way, or wakes the slot."""
        self._interrupt()
        self._wake()

    def _changed(self, new: ProcessState) -> None:
        """Answer the start and restart commands waiting for the slot to settle."""
        if new in _SETTLED:
            self._commands.settle(self.status)

    # -- the slot's work ------------------------------------------------------

    def launch(
        self,
        tg: TaskGroup,
        *,
        start_reason: str = "autostart",
        on_begun: Callable[[], None] | None = None,
    ) -> None:
        """Supervise the slot in ``tg``: autostart, restart by policy, execute commands.

        The slot's work runs in a task of ``tg`` only while there is some: a
        start, a stop, a backoff, commands. At rest (its process STARTING or
        RUNNING, or none alive, and no command queued) it holds no task: a timer
        makes a run RUNNING after ``start_seconds``, and the run's exit, a command
        or :meth:`close` starts the next task. So
        cancelling ``tg`` reaches only a slot at work: whoever cancels it must
        :meth:`close` its slots too (``Fleet.run`` and :meth:`run` do).

        Args:
            tg: where the slot works; its runs' watcher tasks (off asyncio, or
                a worker's channel once it talks) run there too.
            start_reason: why the first run starts, with ``autostart`` (a
                slot a reload adds says so).
            on_begun: called once when the first start has begun (its run is
                STARTING or its spawn failed), or the first task ended without.

        Raises:
            RuntimeError: the slot was already launched (or run), or was closed
                before its launch (its fleet cancelled, not shut down, while a
                reload waits for room to launch it).
        """
        if self._tg is not None:
            raise RuntimeError(f"process {self.name!r}: launched twice")
        if self._closed:
            raise RuntimeError(f"process {self.name!r}: closed before it was launched")
        self._tg = tg
        self._on_begun = on_begun
        self._busy = True
        tg.start_soon(self._work, start_reason if self.spec.autostart else None, name=self.name)

    async def run(
        self,
        *,
        start_reason: str = "autostart",
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Own the slot in a task group of its own until it is closed: :meth:`launch` there.

        Calls ``task_status.started()`` at once. When cancelled, stops the
        current run (shielded, bounded by ``stop_timeout_seconds`` plus
        :data:`STOP_MARGIN_SECONDS`) and re-raises.

        Raises:
            RuntimeError: the slot was already launched (or run), or closed.
        """
        async with anyio.create_task_group() as tg:
            self.launch(tg, start_reason=start_reason)
            task_status.started()
            try:
                await self._ended.wait()
            except BaseException:
                self.close()  # a slot at rest has no task the cancellation reaches
                raise

    def _wake(self) -> None:
        """Start the slot's work where it rested (its run exited, a command came, a close)."""
        if self._tg is not None and not self._busy and not self._ended.is_set():
            self._busy = True
            self._tg.start_soon(self._work, None, name=self.name)

    async def _work(self, reason: str | None) -> None:
        """The slot's task: work until the slot rests (the task ends) or its supervision ends.

        Args:
            reason: why a run starts at once (autostart); None to go on from
                where the slot rested.
        """
        resting = False
        try:
            with anyio.CancelScope() as self._scope:
                if self._closed:  # closed at rest: stop the run it rested with, then end
                    self._scope.cancel(self._end_reason)
                    reason = None
                if reason is not None or self._state.run is not None:
                    resting = await self._supervise(reason)
                while not resting and not self._closed:
                    reason = await self._next_launch()
                    resting = reason is None or await self._supervise(reason)
        finally:
            self._scope, self._busy = None, False
            self._begun()
            if self._closed or not resting:
                self._end()

    def _begun(self) -> None:
        """The first start has begun, or the first task ended: tell the launcher, once."""
        if self._on_begun is not None:
            on_begun, self._on_begun = self._on_begun, None
            on_begun()

    def _end(self) -> None:
        """The supervision has ended: answer what is left."""
        self._closed = True
        if self._state.state is ProcessState.BACKOFF:
            self._state.enter(ProcessState.STOPPED, reason=self._end_reason)
        self._commands.fail_pending(self.status())
        self._ended.set()

    async def _next_launch(self) -> str | None:
        """Answer the queued commands, in order, until one starts a run: why it starts.

        No run is supervised meanwhile: a stop only settles the state.

        Returns:
            None once no command is left (the slot rests).
        """
        while self._commands.first() is not None:
            cmd = await self._commands.take()  # one is queued: no wait
            if cmd.kind != "stop":
                self._state.reset_failures()
                self._commands.settle_later(cmd)
                return cmd.reason
            if self._state.state is not ProcessState.STOPPED:
                self._state.enter(ProcessState.STOPPED, reason=cmd.reason)
            cmd.finish(self.status())
        return None

    def _interrupt(self) -> None:
        """Take the commands queued while a run is supervised (once it was launched).

        A start of a live process is refused at once; any other command ends the
        supervision (stopping a live run, for the command's reason), and the
        slot's task answers it and those after it in order.
        """
        scope = self._supervising
        while scope is not None and not scope.cancel_called:
            cmd = self._commands.first()
            if cmd is None:
                return
            if cmd.kind == "start" and self._state.state.is_alive:
                self._commands.refuse_first(
                    InvalidTransition(self.name, self._state.state.value, "start")
                )
            else:
                self._stop_reason = cmd.reason
                scope.cancel()

    def _launched(self, scope: anyio.CancelScope) -> None:
        """The supervision in ``scope`` has begun its first run (or failed to spawn it)."""
        self._begun()
        if self._supervising is None:
            self._supervising = scope
            self._interrupt()  # commands that came during the launch

    async def _supervise(self, reason: str | None) -> bool:
        """Run, and run again by policy, until a resting state, a command or cancellation.

        Args:
            reason: why a run starts now; None to go on watching the run the
                slot rested with.

        Returns:
            True when the slot rests with its run STARTING or RUNNING: the run's
            exit, a command or :meth:`close` wakes it.
        """
        scope = anyio.CancelScope()
        started = functools.partial(self._launched, scope)
        try:
            with scope:
                if reason is None:
                    decision = await self._resume(started)
                else:
                    decision = await self._attempt(reason, started, by_policy=False)
                while decision is not None:
                    if not decision.restart or not await self._wait_to_restart(decision):
                        return False
                    if decision.state is ProcessState.BACKOFF:
                        reason = f"retry {decision.failures} after {decision.delay:.2f} s"
                    else:
                        reason = f"restarted: restart = {self.spec.restart.value}"
                    decision = await self._attempt(reason, started, by_policy=True)
                return True
        except Exception as exc:  # the slot's task boundary: log it, go FATAL
            logger.exception("process %s: supervision failed", self.name)
            self._state.enter(ProcessState.FATAL, reason=f"internal error: {exc!r}")
        finally:
            self._supervising, self._stop_reason = None, None
        return False

    async def _wait_to_restart(self, decision: policy.Decision) -> bool:
        """Sleep out the decision's delay; False if a reload turned the restart off.

        A pending halt (stop, shutdown) cancels the wait from outside instead.
        """
        wait = anyio.CancelScope()
        if decision.state is ProcessState.EXITED:  # a restart by policy, not a retry
            self._restart_wait = wait
        self._state.start_pending(time.time() + decision.delay)
        try:
            with wait:
                await anyio.sleep(decision.delay)
        finally:
            self._state.start_pending(None)
            self._restart_wait = None
        if wait.cancelled_caught:
            why = f"restart cancelled by reload: restart = {self.spec.restart.value} now"
            self._state.enter(ProcessState.EXITED, reason=why)
            return False
        return True

    async def _attempt(
        self, reason: str, started: Callable[[], None], *, by_policy: bool
    ) -> policy.Decision | None:
        """Spawn a run and watch it: what to do after it ended, or None if it rests."""
        try:
            run = spawn(
                self.spec,
                process=self.name,
                node=self._ctx.node,
                instance_id=self._ctx.instance_id,
                log_dir=self._ctx.log_dir,
                clock=self._ctx.clock,
                with_channel=self._ctx.desk is not None and self._ctx.store is not None,
                secrets=self._ctx.secrets,
            )
        except SpawnError as exc:
            # The state change, the status INFO column and the audit carry it too.
            logger.info("%s", exc)
            decision = self._state.failed_spawn(exc)
            started()
            return decision
        self._state.spawned(run, by_policy=by_policy)
        return await self._watch(run, started, reason)

    async def _resume(self, started: Callable[[], None]) -> policy.Decision | None:
        """Go on watching the run the slot rested with (its exit or a command woke it)."""
        run = self._state.run
        assert run is not None, "a slot rests with its run, or none"
        started()  # long launched: a queued command interrupts at once
        return await self._watch(run, started)

    # -- one run -----------------------------------------------------------------

    async def _watch(
        self, run: Run, started: Callable[[], None], reason: str | None = None
    ) -> policy.Decision | None:
        """Watch a run to its end (what to do next), or until it rests, STARTING or RUNNING (None).

        Stops its tree if cancelled meanwhile. A run that ended is released.

        Args:
            reason: why a run just spawned started: it is recorded and its
                watchers started first; None for a run already watched.
        """
        resting = False
        try:
            try:
                if reason is not None:
                    await self._begin(run, reason, started)
                await self._until_up(run)
                await anyio.lowlevel.checkpoint_if_cancelled()  # a halt comes first
                if not run.exited.is_set():
                    resting = True  # no await from here: the exit cannot slip by
                    return None
                await run.catch_up(CATCH_UP_SECONDS)
            except BaseException:
                with anyio.move_on_after(self._stop_bound(), shield=True):
                    await self._stop_tree(run)
                self._stopped(run)
                raise
            decision = self._state.exited(run, now=self._ctx.clock())
            with anyio.move_on_after(self._stop_bound(), shield=True):
                await self._after_exit(run)
            return decision
        finally:
            if not resting:
                await self._release(run)

    async def _begin(self, run: Run, reason: str, started: Callable[[], None]) -> None:
        """Identify and record a run just spawned, report it STARTING, start its watchers."""
        assert self._tg is not None, "a slot works once launched"
        with anyio.CancelScope(shield=True):  # before the exit watcher can reap it; recorded whole
            await run.identify(self._ctx.reaper)
            try:
                await self._record_start(run, reason, started)
            finally:  # after STARTING, so no line of the run precedes it
                run.on_exit = self._wake
                run.start_watchers(
                    self._tg,
                    consumer=self._ctx.lines,
                    max_line_bytes=self.spec.max_line_bytes,
                    link=self._link(run),
                )

    async def _release(self, run: Run) -> None:
        """Let go of a run that ended: its timer and watchers, then its fds."""
        if self._up_timer is not None:
            self._up_timer.cancel()
            self._up_timer = None
        run.end_watchers()
        with anyio.CancelScope(shield=True):
            await run.watchers_ended()
        self._state.run_handled()
        run.close()

    def _link(self, run: Run) -> _LinkMaker | None:
        """What makes the reader of the run's channel to dsup, if it has one."""
        if run.channel is None or self._ctx.desk is None or self._ctx.store is None:
            return None
        return _LinkMaker(self, run, self.spec)

    def _make_link(self, run: Run, spec: ProgramSpec) -> WorkerLink:
        """The reader of a run's channel, made once its worker first writes.

        Args:
            run: the run (it has a channel).
            spec: the program as the run was spawned.
        """
        # Here: most workers never write, and a node need not load what reads them.
        from supervisor.process.worker_link import WorkerLink

        desk, store = self._ctx.desk, self._ctx.store
        assert run.channel is not None  # see _link
        assert desk is not None
        assert store is not None
        return WorkerLink(
            run.channel,
            process=self.name,
            program=spec.name,
            run_id=run.run_id,
            cwd=str(spec.cwd) if spec.cwd is not None else os.getcwd(),  # as spawned
            emit=self._ctx.emit,
            desk=desk,
            store=store,
            clock=self._ctx.clock,
            tasks=self._ctx.tasks,
        )

    def _stop_bound(self) -> float:
        """The longest a stop may take, read when it begins: a reload may change it."""
        return self.spec.stop_timeout_seconds + STOP_MARGIN_SECONDS

    async def _record_start(self, run: Run, reason: str, started: Callable[[], None]) -> None:
        """Record the run durably, then report it STARTING."""
        await run.record_start(self._ctx.ledger)
        self._state.enter(ProcessState.STARTING, run=run, reason=reason)
        started()

    async def _until_up(self, run: Run) -> None:
        """Make a STARTING run RUNNING after start_seconds, unless its main process exits first.

        On asyncio a loop timer does it, so a starting slot rests (a task waiting
        for each of 500 starts left its memory as holes between the processes'
        long-lived objects); elsewhere the slot's task waits.
        """
        if self._state.state is not ProcessState.STARTING or run.exited.is_set():
            return
        up_at = policy.running_at(self.spec, started_at=run.started_at)
        delay = max(0.0, up_at - self._ctx.clock())
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio)
            with anyio.move_on_after(delay):
                await run.exited.wait()
            self._up(run)
            return
        if self._up_timer is None:  # not when a command woke the slot meanwhile
            self._up_timer = loop.call_later(delay, self._up, run)

    def _up(self, run: Run) -> None:
        """``start_seconds`` have passed: RUNNING, if ``run`` is still the slot's and alive."""
        self._up_timer = None
        st = self._state
        if st.run is run and st.state is ProcessState.STARTING and not run.exited.is_set():
            st.went_up(run)

    async def _after_exit(self, run: Run) -> None:
        """Record the exit, end what the run left behind, capture the last output."""
        await run.record_exit(self._ctx.ledger)
        if self.spec.keep_descendants:
            if self._kept is None:
                self._kept = collections.deque(maxlen=KEPT_RUNS)
            self._kept.append(run.run_id)
        else:
            outcome = await self._ctx.reaper.end_leftovers(
                run.ident,
                run_id=run.run_id,
                sig=self.spec.stop_signal,
                timeout=self.spec.stop_timeout_seconds,
                pipes=run.pipe_inodes(),
            )
            logger.debug("process %s (pid %d): leftovers: %s", self.name, run.pid, outcome)
        await run.drain(PIPE_GRACE_SECONDS)

    async def _stop_tree(self, run: Run) -> None:
        """Stop the whole tree of a live run (stop_signal, timeout, SIGKILL)."""
        reason = self._stop_reason or self._end_reason
        self._state.enter(ProcessState.STOPPING, run=run, reason=reason)
        outcome = await self._ctx.reaper.terminate_tree(
            run.ident,
            run_id=run.run_id,
            sig=self.spec.stop_signal,
            timeout=self.spec.stop_timeout_seconds,
            main_exited=run.exited,
            pipes=run.pipe_inodes(),
        )
        logger.info("process %s (pid %d): stopped: %s", self.name, run.pid, outcome)
        await run.exited.wait()
        await run.record_exit(self._ctx.ledger)
        await run.drain(PIPE_GRACE_SECONDS)

    def _stopped(self, run: Run) -> None:
        reason = self._stop_reason or self._end_reason
        self._state.enter(ProcessState.STOPPED, run=run, ended=True, reason=reason)


class _LinkMaker:
    """Makes the reader of a run's channel when its worker first writes; most never do.

    A partial of :meth:`Slot._make_link` holding its arguments (the bound method,
    a tuple, the cwd as a string) cost each run about 300 bytes; this is 56.
    """

    __slots__ = ("_run", "_slot", "_spec")

    def __init__(self, slot: Slot, run: Run, spec: ProgramSpec) -> None:
        self._slot = slot
        self._run = run
        self._spec = spec

    def __call__(self) -> WorkerLink:
        return self._slot._make_link(self._run, self._spec)
