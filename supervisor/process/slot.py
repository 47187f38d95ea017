"""One slot ``program:index`` across its runs: spawns, restarts by policy, stops as a tree.

Runs are supervised and commands run one at a time in the slot's own task; a run's exit watcher
and pumps are loop readers that cancellation does not reach, so output and exit status are still
captured while the slot is cancelled.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

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
    import socket
    from collections.abc import Callable
    from pathlib import Path

    from anyio.abc import TaskStatus

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
    """One process slot ``program:index`` for the lifetime of its ``run`` task.

    Args:
        spec: the program.
        index: 0 .. numprocs-1.
        ctx: what the fleet shares.
    """

    __slots__ = (
        "_closed",
        "_commands",
        "_ctx",
        "_end_reason",
        "_ended",
        "_kept",
        "_restart_wait",
        "_running",
        "_scope",
        "_state",
        "_stop_reason",
        "_supervising",
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
        self._commands = Mailbox(self.name, on_queued=self._interrupt)
        self._supervising: anyio.CancelScope | None = None  # a supervision once launched
        self._stop_reason: str | None = None
        self._end_reason = "no longer supervised"
        self._running = False
        self._closed = False
        self._restart_wait: anyio.CancelScope | None = None  # a pending restart by policy
        self._kept: collections.deque[str] | None = None  # made at the first kept run
        self._scope: anyio.CancelScope | None = None  # what ``run`` runs in; ``close`` cancels it
        self._ended = LazyEvent()  # ``run`` has returned

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

    def close(self, reason: str) -> None:
        """End the supervision of this slot: its ``run`` stops the live run and returns.

        The stop of the live run (STOPPING, STOPPED) or the end of a BACKOFF
        wait then gives ``reason`` ("dsup shutting down", "removed by reload")
        instead of "no longer supervised" (the reason of a cancelled caller).
        Commands submitted after this are refused as after the end of ``run``;
        :meth:`wait_ended` returns once ``run`` has.

        Args:
            reason: a short human explanation.
        """
        self._end_reason = reason
        self._closed = True
        if self._scope is not None:
            self._scope.cancel(reason)

    async def wait_ended(self) -> None:
        """Return once :meth:`run` has returned (after :meth:`close`, or its cancellation)."""
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
            for log in self._state.run.logs.values():
                log.resize(max_bytes=spec.log_max_bytes, backups=spec.log_backups)

    async def _submit(self, kind: Kind, reason: str) -> ProcessStatus:
        if self._closed:
            if kind == "stop":
                return self.status()
            raise InvalidTransition(self.name, self._state.state.value, f"{kind}: not supervised")
        return await self._commands.submit(kind, reason)

    def _changed(self, new: ProcessState) -> None:
        """Answer the start and restart commands waiting for the slot to settle."""
        if new in _SETTLED:
            self._commands.settle(self.status)

    # -- the slot's task -------------------------------------------------------

    async def run(
        self,
        *,
        start_reason: str = "autostart",
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Own the slot: autostart, restart by policy, execute commands.

        Calls ``task_status.started()`` at once. When cancelled, stops the
        current run (shielded, bounded by ``stop_timeout_seconds`` plus
        :data:`STOP_MARGIN_SECONDS`) and re-raises.

        Args:
            start_reason: why the first run starts, with ``autostart`` (a
                slot a reload adds says so).

        Raises:
            RuntimeError: ``run`` was already called for this slot.
        """
        if self._running or self._closed:
            raise RuntimeError(f"process {self.name!r}: run() called twice")
        self._running = True
        try:
            with anyio.CancelScope() as self._scope:
                task_status.started()
                reason = start_reason if self.spec.autostart else await self._next_launch()
                while True:
                    await self._supervise(reason)
                    reason = await self._next_launch()
        finally:
            self._running, self._closed = False, True
            if self._state.state is ProcessState.BACKOFF:
                self._state.enter(ProcessState.STOPPED, reason=self._end_reason)
            self._commands.fail_pending(self.status())
            self._ended.set()

    async def _next_launch(self) -> str:
        """Answer the commands, in order, until one starts a run; why it starts.

        No run is supervised meanwhile: a stop only settles the state.
        """
        while True:
            cmd = await self._commands.take()
            if cmd.kind != "stop":
                self._state.reset_failures()
                self._commands.settle_later(cmd)
                return cmd.reason
            if self._state.state is not ProcessState.STOPPED:
                self._state.enter(ProcessState.STOPPED, reason=cmd.reason)
            cmd.finish(self.status())

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
        if self._supervising is None:
            self._supervising = scope
            self._interrupt()  # commands that came during the launch

    async def _supervise(self, reason: str) -> None:
        """Run, and run again by policy, until a resting state, a command or cancellation.

        In the slot's own task: a run at rest costs no task besides it.
        """
        scope = anyio.CancelScope()
        started = functools.partial(self._launched, scope)
        by_policy = False
        try:
            with scope:
                while True:
                    decision = await self._attempt(reason, started, by_policy=by_policy)
                    if not decision.restart:
                        return
                    if not await self._wait_to_restart(decision):
                        return
                    by_policy = True
                    if decision.state is ProcessState.BACKOFF:
                        reason = f"retry {decision.failures} after {decision.delay:.2f} s"
                    else:
                        reason = f"restarted: restart = {self.spec.restart.value}"
        except Exception as exc:  # the slot's task boundary: log it, go FATAL
            logger.exception("process %s: supervision failed", self.name)
            self._state.enter(ProcessState.FATAL, reason=f"internal error: {exc!r}")
        finally:
            self._supervising, self._stop_reason = None, None

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
    ) -> policy.Decision:
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
        try:
            return await self._live(run, reason, started)
        finally:
            self._state.run_handled()
            run.close()

    # -- one run -----------------------------------------------------------------

    async def _live(self, run: Run, reason: str, started: Callable[[], None]) -> policy.Decision:
        """Watch one run to its end; stop its tree if cancelled meanwhile."""
        async with anyio.create_task_group() as tg:
            with anyio.CancelScope(shield=True):  # before the exit watcher can reap it
                await run.identify(self._ctx.reaper)
            try:
                try:
                    with anyio.CancelScope(shield=True):  # a spawn is recorded whole
                        try:
                            await self._record_start(run, reason, started)
                        finally:  # after STARTING, so no line of the run precedes it
                            run.start_watchers(
                                tg,
                                consumer=self._ctx.lines,
                                max_line_bytes=self.spec.max_line_bytes,
                                link=self._link(run),
                            )
                    await self._until_exit(run)
                    await run.catch_up(CATCH_UP_SECONDS)
                except BaseException:
                    with anyio.move_on_after(self._stop_bound(), shield=True):
                        await self._stop_tree(run)
                    self._stopped(run)
                    raise
                decision = self._state.exited(run, now=self._ctx.clock())
                with anyio.move_on_after(self._stop_bound(), shield=True):
                    await self._after_exit(run)
            finally:
                run.end_watchers()
        return decision

    def _link(self, run: Run) -> Callable[[], WorkerLink] | None:
        """What makes the reader of the run's channel to dsup, if it has one.

        A small partial: most runs never write to their channel, and a partial
        holding every argument of the link would cost each of them its keywords.
        """
        desk, store = self._ctx.desk, self._ctx.store
        if run.channel is None or desk is None or store is None:
            return None
        cwd = str(self.spec.cwd) if self.spec.cwd is not None else os.getcwd()  # as spawned
        return functools.partial(self._make_link, run.channel, run.run_id, cwd, desk, store)

    def _make_link(
        self, channel: socket.socket, run_id: str, cwd: str, desk: QuestionDesk, store: WorkerStore
    ) -> WorkerLink:
        """The reader of a run's channel, made once its worker first writes."""
        # Here: most workers never write, and a node need not load what reads them.
        from supervisor.process.worker_link import WorkerLink

        return WorkerLink(
            channel,
            process=self.name,
            program=self.spec.name,
            run_id=run_id,
            cwd=cwd,
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

    async def _until_exit(self, run: Run) -> None:
        """Wait for the main process to exit, going RUNNING after start_seconds."""
        up_at = policy.running_at(self.spec, started_at=run.started_at)
        with anyio.move_on_after(max(0.0, up_at - self._ctx.clock())):
            await run.exited.wait()
        if not run.exited.is_set():
            self._state.went_up(run)
            await run.exited.wait()

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
