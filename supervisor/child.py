"""One process slot ``program:index``: spawn, drain, watch, restart, stop.

This module owns the life of one slot: spawning each run in its own session
with the marker variables, watching the main process's exit from the process
itself (a pidfd on Linux, never pipe EOF), running the two output pumps, the
state machine (supervisord's vocabulary, :class:`ProcessState`) and the
operator commands. It does not own the restart rules (``policy``), killing
trees and orphans (``reaper``), reading pipes (``pump``), the log files
(``logs``) nor the ledger's schema (``ledger``).

Concurrency: every command (start, stop, restart) is queued to the slot's own
``run`` task and executed there one at a time, so concurrent callers cannot
interleave half-done transitions. Each run lives in a task group with its exit
watcher and pumps; those run in shielded scopes that this module cancels
itself, so the output written while a tree is being stopped is still captured
and the exit status is still reaped when the slot is cancelled.

Kept descendants (``keep_descendants = true``) keep running after their run's
main process exits, but their output is captured only for a short grace: after
it the pipe's read end is closed, and their next write gets EPIPE/SIGPIPE.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import random
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import anyio
from anyio.lowlevel import checkpoint

from supervisor import policy
from supervisor.errors import InvalidTransition, SpawnError
from supervisor.events import ProcessState, StateChanged
from supervisor.ledger import ProcIdent
from supervisor.logs import RotatingLog, log_paths
from supervisor.pump import make_pipe, pump
from supervisor.reaper import (
    MARKER_INSTANCE,
    MARKER_NODE,
    MARKER_PROCESS,
    MARKER_PROGRAM,
    MARKER_RUN_ID,
)

if TYPE_CHECKING:
    import signal
    from collections.abc import Callable
    from pathlib import Path

    from anyio.abc import TaskGroup, TaskStatus

    from supervisor.config import ProgramSpec
    from supervisor.events import Event, Stream
    from supervisor.ledger import Ledger
    from supervisor.pump import LineConsumer
    from supervisor.reaper import Reaper

logger = logging.getLogger(__name__)

STOP_MARGIN_SECONDS = 5.0  # a stop may take stop_timeout_seconds plus this
PIPE_GRACE_SECONDS = 1.0  # output still captured after the main process exited
POLL_SECONDS = 0.1  # waitpid poll interval where pidfd_open is missing
_SETTLED = frozenset(
    {
        ProcessState.RUNNING,
        ProcessState.BACKOFF,
        ProcessState.FATAL,
        ProcessState.EXITED,
        ProcessState.STOPPED,
    }
)
_Kind = Literal["start", "stop", "restart"]
_STREAMS: tuple[Stream, Stream] = ("stdout", "stderr")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildContext:
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
    """

    node: str
    instance_id: str
    log_dir: Path
    ledger: Ledger
    reaper: Reaper
    emit: Callable[[Event], None]
    lines: LineConsumer
    clock: Callable[[], float] = anyio.current_time


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessStatus:
    """A snapshot of one slot, for status views and command results.

    Attributes:
        process: ``program:index``.
        program: the program name.
        index: the index within the program.
        state: the current state.
        pid: the main process while it is alive (unreaped), else None.
        run_id: the current run while it or its tree is being handled, else None.
        started_at: wall time the current run was spawned, or None.
        state_since: wall time of the last state change.
        restarts: runs started after the first.
        last_exit_code: exit status of the last ended run, if it called exit().
        last_exit_signal: signal that killed the last ended run, if any.
        last_error: the last spawn error, "" after a successful spawn.
    """

    process: str
    program: str
    index: int
    state: ProcessState
    pid: int | None
    run_id: str | None
    started_at: float | None
    state_since: float
    restarts: int
    last_exit_code: int | None
    last_exit_signal: int | None
    last_error: str


@dataclass(eq=False, slots=True, kw_only=True)
class _Command:
    kind: _Kind
    reason: str
    done: anyio.Event = field(default_factory=anyio.Event)
    result: ProcessStatus | None = None
    error: InvalidTransition | None = None

    def finish(self, result: ProcessStatus | None, error: InvalidTransition | None = None) -> None:
        if not self.done.is_set():
            self.result, self.error = result, error
            self.done.set()


@dataclass(eq=False, slots=True, kw_only=True)
class _Run:
    """One spawned main process, its pipes and the tasks that watch them."""

    run_id: str
    popen: subprocess.Popen[bytes]
    fds: dict[Stream, int]
    logs: dict[Stream, RotatingLog]
    pidfd: int | None
    started_at: float
    started_wall: float
    ident: ProcIdent  # create_time 0.0 until identified: matches no stranger
    exit_code: int | None = None
    exit_signal: int | None = None
    exited: anyio.Event = field(default_factory=anyio.Event)
    pumps_done: anyio.Event = field(default_factory=anyio.Event)
    pumps_left: int = 2
    scopes: list[anyio.CancelScope] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def close(self) -> None:
        """Release the fds and logs (after every watcher task ended)."""
        for fd in [*self.fds.values(), *([self.pidfd] if self.pidfd is not None else [])]:
            os.close(fd)
        for log in self.logs.values():
            log.close()


class _Once:
    """Calls ``task_status.started()`` at most once."""

    def __init__(self, task_status: TaskStatus[None]) -> None:
        self._task_status: TaskStatus[None] | None = task_status

    def __call__(self) -> None:
        if self._task_status is not None:
            self._task_status.started()
            self._task_status = None


class ChildProcess:
    """One process slot ``program:index`` for the lifetime of its ``run`` task.

    Args:
        spec: the program.
        index: 0 .. numprocs-1.
        ctx: what the fleet shares.
    """

    def __init__(self, spec: ProgramSpec, index: int, ctx: ChildContext) -> None:
        self.spec = spec
        self.index = index
        self.name = f"{spec.name}:{index}"
        self._ctx = ctx
        self._rng = random.Random()
        self._state = ProcessState.STOPPED
        self._state_since = time.time()
        self._run: _Run | None = None
        self._runs = 0
        self._failures = 0
        self._last_exit: tuple[int | None, int | None] = (None, None)
        self._last_error = ""
        self._queue: collections.deque[_Command] = collections.deque()
        self._wake: anyio.Event | None = None
        self._settling: list[_Command] = []
        self._supervisor: tuple[anyio.CancelScope, anyio.Event] | None = None
        self._stop_reason: str | None = None
        self._tg: TaskGroup | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<ChildProcess {self.name} {self._state.value}>"

    def status(self) -> ProcessStatus:
        """Return a snapshot of this slot."""
        run = self._run
        alive = run is not None and not run.exited.is_set()
        return ProcessStatus(
            process=self.name,
            program=self.spec.name,
            index=self.index,
            state=self._state,
            pid=run.pid if run is not None and alive else None,
            run_id=run.run_id if run is not None else None,
            started_at=run.started_wall if run is not None and alive else None,
            state_since=self._state_since,
            restarts=max(0, self._runs - 1),
            last_exit_code=self._last_exit[0],
            last_exit_signal=self._last_exit[1],
            last_error=self._last_error,
        )

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

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the main process's group.

        Raises:
            InvalidTransition: no live main process.
        """
        run = self._run
        if run is None or run.exited.is_set() or not self._state.is_alive:
            raise InvalidTransition(self.name, self._state.value, f"send {sig.name}")
        try:
            os.killpg(run.pid, sig)
        except ProcessLookupError:
            logger.debug("%s (pid %d): group already gone for %s", self.name, run.pid, sig.name)

    async def _submit(self, kind: _Kind, reason: str) -> ProcessStatus:
        if self._closed:
            if kind == "stop":
                return self.status()
            raise InvalidTransition(self.name, self._state.value, f"{kind}: not supervised")
        cmd = _Command(kind=kind, reason=reason)
        self._queue.append(cmd)
        if self._wake is not None:
            self._wake.set()
        await cmd.done.wait()
        if cmd.error is not None:
            raise cmd.error
        assert cmd.result is not None  # finish() gives a result or an error
        return cmd.result

    # -- the slot's task -------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the slot: autostart, restart by policy, execute commands.

        Calls ``task_status.started()`` at once. When cancelled, stops the
        current run (shielded, bounded by ``stop_timeout_seconds`` plus
        :data:`STOP_MARGIN_SECONDS`) and re-raises.

        Raises:
            RuntimeError: ``run`` was already called for this slot.
        """
        if self._tg is not None or self._closed:
            raise RuntimeError(f"process {self.name!r}: run() called twice")
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                if self.spec.autostart:
                    await self._launch("autostart")
                await self._serve_commands()
        finally:
            self._tg, self._closed = None, True
            if self._state is ProcessState.BACKOFF:
                self._set_state(ProcessState.STOPPED, reason="supervision ended")
            self._fail_pending()

    async def _serve_commands(self) -> None:
        while True:
            while not self._queue:
                self._wake = anyio.Event()
                await self._wake.wait()
            cmd = self._queue[0]
            try:
                await self._execute(cmd)
            except InvalidTransition as exc:
                cmd.finish(None, exc)
            self._queue.popleft()

    async def _execute(self, cmd: _Command) -> None:
        if cmd.kind == "stop":
            await self._halt(cmd.reason)
            if self._state is not ProcessState.STOPPED:
                self._set_state(ProcessState.STOPPED, reason=cmd.reason)
            cmd.finish(self.status())
            return
        if cmd.kind == "start" and self._state.is_alive:
            raise InvalidTransition(self.name, self._state.value, "start")
        await self._halt(cmd.reason)
        self._failures = 0
        self._settling.append(cmd)
        await self._launch(cmd.reason)

    def _fail_pending(self) -> None:
        for cmd in [*self._settling, *self._queue]:
            if cmd.kind == "stop" or self._state in _SETTLED:
                cmd.finish(self.status())
            else:
                cmd.finish(None, InvalidTransition(self.name, self._state.value, cmd.kind))
        self._settling.clear()
        self._queue.clear()

    async def _halt(self, reason: str) -> None:
        """End the supervising task (stopping a live run); leaves other states alone."""
        if self._supervisor is None:
            return
        scope, done = self._supervisor
        self._stop_reason = reason
        scope.cancel()
        await done.wait()
        self._supervisor, self._stop_reason = None, None

    async def _launch(self, reason: str) -> None:
        assert self._tg is not None  # called from run() only
        scope, done = anyio.CancelScope(), anyio.Event()
        self._supervisor = (scope, done)
        await self._tg.start(self._supervise, scope, done, reason)

    async def _supervise(
        self,
        scope: anyio.CancelScope,
        done: anyio.Event,
        reason: str,
        *,
        task_status: TaskStatus[None],
    ) -> None:
        """Run, and run again by policy, until a resting state or cancellation."""
        started = _Once(task_status)
        try:
            with scope:
                while True:
                    decision = await self._attempt(reason, started)
                    if not decision.restart:
                        return
                    if decision.state is ProcessState.BACKOFF:
                        delay = policy.backoff_delay(decision.failures, self.spec, self._rng)
                        await anyio.sleep(delay)
                        reason = f"retry {decision.failures} after {delay:.2f} s"
                    else:
                        await checkpoint()  # a pending halt wins over the restart
                        reason = f"restarted by policy ({self.spec.restart.value})"
        except Exception as exc:  # the slot's task boundary: log it, go FATAL
            logger.exception("process %s: supervision failed", self.name)
            self._set_state(ProcessState.FATAL, reason=f"internal error: {exc!r}")
        finally:
            started()
            done.set()

    async def _attempt(self, reason: str, started: _Once) -> policy.Decision:
        try:
            run = self._spawn()
        except SpawnError as exc:
            logger.warning("%s", exc)
            self._last_error = exc.reason
            decision = policy.after_failed_start(
                self.spec, failures=self._failures, reason=f"cannot start: {exc.reason}"
            )
            self._failures = decision.failures
            self._set_state(decision.state, reason=decision.reason)
            started()
            return decision
        self._run, self._last_error = run, ""
        self._runs += 1
        try:
            return await self._live(run, reason, started)
        finally:
            self._run = None
            run.close()

    # -- one run -----------------------------------------------------------------

    def _spawn(self) -> _Run:
        """Start the main process in a new session; raise SpawnError if it cannot."""
        run_id = uuid.uuid4().hex
        paths = log_paths(self._ctx.log_dir, self.name)
        logs: dict[Stream, RotatingLog] = {}
        fds: dict[Stream, int] = {}
        ends: dict[Stream, int] = {}
        with contextlib.ExitStack() as always, contextlib.ExitStack() as on_fail:
            try:
                for stream, path in zip(_STREAMS, paths, strict=True):
                    logs[stream] = on_fail.enter_context(self._open_log(path))
                    fds[stream], ends[stream] = make_pipe()
                    on_fail.callback(os.close, fds[stream])
                    always.callback(os.close, ends[stream])
                popen = subprocess.Popen(
                    self.spec.command,
                    cwd=self.spec.cwd,
                    env=self._env(run_id),
                    stdin=subprocess.DEVNULL,
                    stdout=ends["stdout"],
                    stderr=ends["stderr"],
                    start_new_session=True,
                    close_fds=True,
                )
            except (OSError, ValueError) as exc:
                raise SpawnError(self.name, self.spec.command, _spawn_reason(exc)) from exc
            on_fail.pop_all()
        return _Run(
            run_id=run_id,
            popen=popen,
            fds=fds,
            logs=logs,
            pidfd=_pidfd_open(popen.pid),
            ident=ProcIdent(popen.pid, 0.0),
            started_at=self._ctx.clock(),
            started_wall=time.time(),
        )

    def _open_log(self, path: Path) -> RotatingLog:
        return RotatingLog(path, max_bytes=self.spec.log_max_bytes, backups=self.spec.log_backups)

    def _env(self, run_id: str) -> dict[str, str]:
        env = dict(os.environ)
        if self.spec.unbuffered:
            env["PYTHONUNBUFFERED"] = "1"
        env.update(self.spec.env)
        env[MARKER_NODE] = self._ctx.node
        env[MARKER_INSTANCE] = self._ctx.instance_id
        env[MARKER_PROGRAM] = self.spec.name
        env[MARKER_PROCESS] = self.name
        env[MARKER_RUN_ID] = run_id
        return env

    async def _live(self, run: _Run, reason: str, started: _Once) -> policy.Decision:
        """Watch one run to its end; stop its tree if cancelled meanwhile."""
        bound = self.spec.stop_timeout_seconds + STOP_MARGIN_SECONDS
        async with anyio.create_task_group() as tg:
            self._start_watchers(tg, run)
            try:
                try:
                    with anyio.CancelScope(shield=True):  # a spawn is recorded whole
                        await self._record_start(run, reason, started)
                    await self._until_exit(run)
                except BaseException:
                    with anyio.move_on_after(bound, shield=True):
                        await self._stop_tree(run)
                    self._stopped(run)
                    raise
                decision = self._decide(run)
                with anyio.move_on_after(bound, shield=True):
                    await self._after_exit(run)
            finally:
                for scope in run.scopes:
                    scope.cancel()
        return decision

    def _start_watchers(self, tg: TaskGroup, run: _Run) -> None:
        """Start the exit watcher and the pumps, each in a scope only we cancel."""
        run.scopes = [anyio.CancelScope(shield=True) for _ in range(3)]
        tg.start_soon(self._watch_exit, run, run.scopes[0])
        for stream, scope in zip(_STREAMS, run.scopes[1:], strict=True):
            tg.start_soon(self._pump, run, stream, scope)

    async def _watch_exit(self, run: _Run, scope: anyio.CancelScope) -> None:
        with scope:
            status = await _reap(run.pid, run.pidfd)
            code = os.waitstatus_to_exitcode(status) if status is not None else None
            # Popen must never wait for this pid again, nor warn that it still runs.
            run.popen.returncode = code if code is not None else -1
            if code is not None and code < 0:
                run.exit_signal = -code
            else:
                run.exit_code = code
            run.exited.set()

    async def _pump(self, run: _Run, stream: Stream, scope: anyio.CancelScope) -> None:
        with scope:
            try:
                await pump(
                    run.fds[stream],
                    process=self.name,
                    stream=stream,
                    log=run.logs[stream],
                    consumer=self._ctx.lines,
                    max_line_bytes=self.spec.max_line_bytes,
                )
            except Exception:  # a task boundary: the log is lost, the run goes on
                logger.exception(
                    "process %s (pid %d): %s capture failed", self.name, run.pid, stream
                )
        run.pumps_left -= 1
        if not run.pumps_left:
            run.pumps_done.set()

    async def _record_start(self, run: _Run, reason: str, started: _Once) -> None:
        """Identify and record the run durably, then report it STARTING."""
        ident = await self._ctx.reaper.identify(run.pid)
        if ident is None:  # cannot happen to an unreaped child: keep the placeholder
            logger.warning("process %s (pid %d): no create_time", self.name, run.pid)
        else:
            run.ident = ident
        await anyio.to_thread.run_sync(
            functools.partial(
                self._ctx.ledger.record_run_start,
                run_id=run.run_id,
                process=self.name,
                program=self.spec.name,
                pid=run.pid,
                create_time=run.ident.create_time,
                started_at=run.started_wall,
            )
        )
        self._set_state(ProcessState.STARTING, run=run, reason=reason)
        started()

    async def _until_exit(self, run: _Run) -> None:
        """Wait for the main process to exit, going RUNNING after start_seconds."""
        up_at = policy.running_at(self.spec, started_at=run.started_at)
        with anyio.move_on_after(max(0.0, up_at - self._ctx.clock())):
            await run.exited.wait()
        if not run.exited.is_set():
            self._set_state(
                ProcessState.RUNNING, run=run, reason=f"up for {self.spec.start_seconds:g} s"
            )
            await run.exited.wait()

    def _decide(self, run: _Run) -> policy.Decision:
        """Apply the policy to a run that ended on its own; enter its state."""
        decision = policy.after_exit(
            self.spec,
            failures=self._failures,
            started_at=run.started_at,
            now=self._ctx.clock(),
            exit_code=run.exit_code,
            exit_signal=run.exit_signal,
        )
        self._failures = decision.failures
        if decision.state is ProcessState.EXITED and self._state is ProcessState.STARTING:
            self._set_state(ProcessState.RUNNING, run=run, reason="up for start_seconds")
        self._set_state(decision.state, run=run, ended=True, reason=decision.reason)
        return decision

    async def _after_exit(self, run: _Run) -> None:
        """Record the exit, end what the run left behind, capture the last output."""
        await self._record_exit(run)
        if not self.spec.keep_descendants:
            outcome = await self._ctx.reaper.end_leftovers(
                run.ident,
                run_id=run.run_id,
                sig=self.spec.stop_signal,
                timeout=self.spec.stop_timeout_seconds,
            )
            logger.debug("process %s (pid %d): leftovers: %s", self.name, run.pid, outcome)
        await self._drain(run)

    async def _stop_tree(self, run: _Run) -> None:
        """Stop the whole tree of a live run (stop_signal, timeout, SIGKILL)."""
        self._set_state(ProcessState.STOPPING, run=run, reason=self._stop_reason or "shutdown")
        outcome = await self._ctx.reaper.terminate_tree(
            run.ident,
            run_id=run.run_id,
            sig=self.spec.stop_signal,
            timeout=self.spec.stop_timeout_seconds,
            main_exited=run.exited,
        )
        logger.info("process %s (pid %d): stopped: %s", self.name, run.pid, outcome)
        await run.exited.wait()
        await self._record_exit(run)
        await self._drain(run)

    def _stopped(self, run: _Run) -> None:
        if not run.exited.is_set():
            logger.error("process %s (pid %d): still not reaped after its stop", self.name, run.pid)
        reason = self._stop_reason or "shutdown"
        self._set_state(ProcessState.STOPPED, run=run, ended=True, reason=reason)

    async def _record_exit(self, run: _Run) -> None:
        await anyio.to_thread.run_sync(
            functools.partial(
                self._ctx.ledger.record_run_exit,
                run_id=run.run_id,
                exit_code=run.exit_code,
                exit_signal=run.exit_signal,
                ended_at=time.time(),
            )
        )

    async def _drain(self, run: _Run) -> None:
        """Let the pumps read to EOF for a short grace, then end them."""
        with anyio.move_on_after(PIPE_GRACE_SECONDS):
            await run.pumps_done.wait()
        for scope in run.scopes[1:]:
            scope.cancel()

    # -- state -------------------------------------------------------------------

    def _set_state(
        self,
        new: ProcessState,
        *,
        reason: str,
        run: _Run | None = None,
        ended: bool = False,
    ) -> None:
        """Enter ``new`` and emit a StateChanged (also when a state is re-entered)."""
        old, self._state, self._state_since = self._state, new, time.time()
        code = signo = None
        if ended and run is not None:
            code, signo = run.exit_code, run.exit_signal
            self._last_exit = (code, signo)
        pid = run.pid if run is not None else None
        logger.info(
            "process %s (pid %s): %s -> %s: %s", self.name, pid, old.value, new.value, reason
        )
        if new in _SETTLED:
            status = self.status()
            for cmd in self._settling:
                cmd.finish(status)
            self._settling.clear()
        self._ctx.emit(
            StateChanged(
                process=self.name,
                program=self.spec.name,
                old=old,
                new=new,
                pid=pid,
                run_id=run.run_id if run is not None else None,
                exit_code=code,
                exit_signal=signo,
                reason=reason,
                at=self._state_since,
            )
        )


def _spawn_reason(exc: OSError | ValueError) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename is not None else ""
        return f"{exc.strerror}{where}"
    return str(exc)


def _pidfd_open(pid: int) -> int | None:
    """Return a pidfd for ``pid``, or None where the kernel or Python lacks them."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError) as exc:
        logger.debug("pid %d: no pidfd (%s); polling waitpid", pid, exc)
        return None


async def _reap(pid: int, pidfd: int | None) -> int | None:
    """Wait for our child ``pid`` to exit and reap it; return its wait status.

    Returns None when someone else reaped it (ECHILD).
    """
    while True:
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 - never blocks
        except ChildProcessError:
            logger.warning("pid %d: reaped by someone else; exit status unknown", pid)
            return None
        if reaped == pid:
            return status
        if pidfd is not None:
            await anyio.wait_readable(pidfd)
        else:
            await anyio.sleep(POLL_SECONDS)
