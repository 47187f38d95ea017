"""The one command surface shared by ``dsup ctl`` and the Discord bridge.

This module owns what an operator command means: who may run it (access
levels), how it applies to the processes a target names (in parallel), the audit
row every command leaves in the ledger, and the typed results. It does not own
any transport (``control`` for the local socket, ``bridge`` for Discord), how a
process runs (``child``) or how targets resolve (``fleet``).

Every public method takes the :class:`Actor` asking, checks its level first,
and records one audit row whatever happens: ``ok``, ``refused`` (not allowed,
or rejected before anything was touched) or ``failed``.
"""

from __future__ import annotations

import contextlib
import enum
import getpass
import logging
import os
import pwd
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

import anyio

from supervisor.config import load_config
from supervisor.errors import (
    AccessDenied,
    ConfigError,
    ConfigIssue,
    InvalidArgument,
    InvalidTransition,
    SupervisorError,
)
from supervisor.events import ProcessState
from supervisor.logs import follow, log_paths, tail_lines

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from supervisor.child import ChildProcess, ProcessStatus
    from supervisor.events import Stream
    from supervisor.fleet import Fleet, ReloadResult
    from supervisor.ledger import AuditSource

logger = logging.getLogger(__name__)

R = TypeVar("R")

MAX_TAIL_LINES = 1000
"""The most lines one ``tail`` returns per process (the log file has the rest)."""

_AUDIT_TIMEOUT = 5.0
_FOLLOW_BUFFER = 256  # chunks waiting for a slow follower before lines are dropped


class AccessLevel(enum.IntEnum):
    """What an actor may do; each level includes the ones below it."""

    VIEWER = 1  # look: status, tail
    OPERATOR = 2  # act on processes: start, stop, restart, signal
    ADMIN = 3  # act on the node: reload, shutdown


class Command(enum.StrEnum):
    """The commands of the surface, each with the access level it requires."""

    STATUS = "status"
    TAIL = "tail"
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    SIGNAL = "signal"
    RELOAD = "reload"
    SHUTDOWN = "shutdown"

    @property
    def required_level(self) -> AccessLevel:
        """The lowest access level allowed to run this command."""
        return _REQUIRED[self]


_REQUIRED = {
    Command.STATUS: AccessLevel.VIEWER,
    Command.TAIL: AccessLevel.VIEWER,
    Command.START: AccessLevel.OPERATOR,
    Command.STOP: AccessLevel.OPERATOR,
    Command.RESTART: AccessLevel.OPERATOR,
    Command.SIGNAL: AccessLevel.OPERATOR,
    Command.RELOAD: AccessLevel.ADMIN,
    Command.SHUTDOWN: AccessLevel.ADMIN,
}

Outcome = Literal["ok", "refused", "failed"]
ProcessOutcome = Literal["ok", "unchanged", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """Who asks for a command.

    Attributes:
        name: the local user name or the Discord user (as shown in the audit).
        source: ``local`` (control socket) or ``discord``.
        level: what this actor may do.
    """

    name: str
    source: AuditSource
    level: AccessLevel

    @classmethod
    def local(cls, uid: int | None = None) -> Actor:
        """The local user ``uid`` (default: ours), with ADMIN access.

        Whoever can reach the control socket (mode 0600) owns the node, so a
        local actor is an admin; only the name is looked up.
        """
        uid = os.getuid() if uid is None else uid
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:  # a uid with no passwd entry (containers)
            name = getpass.getuser() if uid == os.getuid() else f"uid {uid}"
        return cls(name=name, source="local", level=AccessLevel.ADMIN)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessInfo:
    """One row of ``status``: the process's state and its resource use.

    Attributes:
        status: the state of the process slot.
        rss_bytes: resident memory of the whole tree, None when not running.
        cpu_percent: CPU use of the tree (100 = one core), None when not running.
        nprocs: processes in the tree, None when not running.
    """

    status: ProcessStatus
    rss_bytes: int | None = None
    cpu_percent: float | None = None
    nprocs: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReport:
    """The answer to ``status``.

    Attributes:
        node: the node name.
        at: wall-clock time of the snapshot (for uptimes; display only).
        processes: one row per process, in config order.
    """

    node: str
    at: float
    processes: tuple[ProcessInfo, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessResult:
    """What one command did to one process.

    Attributes:
        process: process name.
        outcome: ``ok``, ``unchanged`` (already as asked, e.g. stopping a
            stopped process) or ``failed``.
        state: the state after the command.
        pid: the pid after the command, if running.
        message: why it failed or was unchanged ("" when ok).
    """

    process: str
    outcome: ProcessOutcome
    state: ProcessState
    pid: int | None = None
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionReport:
    """The answer to ``start``, ``stop``, ``restart`` and ``signal``."""

    command: Command
    target: str
    processes: tuple[ProcessResult, ...]

    @property
    def is_ok(self) -> bool:
        """True when no process failed."""
        return all(p.outcome != "failed" for p in self.processes)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogLines:
    """Lines of one process's log file, oldest first.

    Attributes:
        process: process name.
        stream: which log: ``stdout`` or ``stderr``.
        lines: the lines, without newlines.
        dropped: lines missed just before these by a follower too slow for them.
    """

    process: str
    stream: Stream
    lines: tuple[str, ...]
    dropped: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class LogFollow:
    """An open ``tail -f``: the processes followed and their lines as they come.

    Attributes:
        processes: the names of the processes followed.
        lines: iterate it for :class:`LogLines`; it ends only with the follow.
    """

    processes: tuple[str, ...]
    lines: MemoryObjectReceiveStream[LogLines]


@dataclass(frozen=True, slots=True, kw_only=True)
class TailReport:
    """The answer to ``tail``: the last lines of each process named."""

    logs: tuple[LogLines, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownReport:
    """The answer to ``shutdown``: the node is stopping every process."""

    node: str


def parse_signal(value: str | int) -> signal.Signals:
    """Turn ``TERM``, ``SIGTERM``, ``term`` or ``15`` into a signal.

    Raises:
        InvalidArgument: not a signal of this platform.
    """
    text = str(value).strip().upper()
    try:
        if text.isdigit():
            return signal.Signals(int(text))
        return signal.Signals[text if text.startswith("SIG") else f"SIG{text}"]
    except (KeyError, ValueError):
        raise InvalidArgument(
            "signal", "signal", value, "give a name like TERM, HUP, USR1 or a number"
        ) from None


class CommandService:
    """Applies operator commands to a running fleet, with access checks and audit.

    Every method raises ``AccessDenied`` when the actor's level is too low,
    and records an audit row before returning or raising. Cancelling a method
    cancels the command; its audit row is still written (shielded, bounded).
    """

    def __init__(self, fleet: Fleet, *, poll_interval: float = 0.2) -> None:
        """Serve commands for ``fleet``.

        Args:
            fleet: the running fleet.
            poll_interval: how often ``follow`` looks for new log output (seconds).
        """
        self._fleet = fleet
        self._poll_interval = poll_interval

    # -- viewer --------------------------------------------------------------

    async def status(self, actor: Actor, target: str = "all") -> StatusReport:
        """The state, uptime and resource use of every process ``target`` names."""
        return await self._audited(actor, Command.STATUS, target, lambda: self._status(target))

    async def tail(
        self, actor: Actor, target: str, *, lines: int = 20, stream: Stream = "stdout"
    ) -> TailReport:
        """The last ``lines`` lines (at most MAX_TAIL_LINES) of each process named.

        Raises:
            InvalidArgument: ``lines`` is negative.
        """

        async def run() -> TailReport:
            n = _tail_count(lines)
            return TailReport(
                logs=tuple([await self._tail_one(c, n, stream) for c in self._resolve(target)])
            )

        return await self._audited(actor, Command.TAIL, target, run)

    @contextlib.asynccontextmanager
    async def follow(
        self, actor: Actor, target: str, *, lines: int = 10, stream: Stream = "stdout"
    ) -> AsyncIterator[LogFollow]:
        """Follow the logs of the processes named, like ``tail -f``.

        Use as ``async with service.follow(actor, "web") as f: async for
        chunk in f.lines: ...``. The first chunks are the last ``lines`` lines of
        each process; then come new lines as they reach the log files, across
        rotations. A consumer too slow for the output misses lines, counted in
        ``LogLines.dropped``; the log files keep everything. Leaving the block
        (or cancelling it) stops every follower.

        Raises:
            UnknownWorker: nothing matches ``target``.
            InvalidArgument: ``lines`` is negative.
        """
        children: list[ChildProcess] = []

        async def first() -> TailReport:
            n = _tail_count(lines)
            children.extend(self._resolve(target))
            return TailReport(logs=tuple([await self._tail_one(c, n, stream) for c in children]))

        report = await self._audited(actor, Command.TAIL, target, first, detail="follow")
        # Room for every first chunk, so handing them over never blocks.
        size = _FOLLOW_BUFFER + len(children)
        send, receive = anyio.create_memory_object_stream[LogLines](size)
        async with send, receive, anyio.create_task_group() as tg:
            for initial, child in zip(report.logs, children, strict=True):
                if initial.lines:
                    send.send_nowait(initial)
                tg.start_soon(self._follow_one, child, stream, send.clone())
            yield LogFollow(processes=tuple(c.name for c in children), lines=receive)
            tg.cancel_scope.cancel("follower left")

    # -- operator ------------------------------------------------------------

    async def start(self, actor: Actor, target: str) -> ActionReport:
        """Start every stopped process ``target`` names (waits for RUNNING or failure)."""
        return await self._act(actor, Command.START, target, _start_one)

    async def stop(self, actor: Actor, target: str) -> ActionReport:
        """Stop every process ``target`` names, in parallel."""
        return await self._act(actor, Command.STOP, target, _stop_one)

    async def restart(self, actor: Actor, target: str) -> ActionReport:
        """Stop then start every process ``target`` names, in parallel."""
        return await self._act(actor, Command.RESTART, target, _restart_one)

    async def signal(self, actor: Actor, target: str, sig: str | int) -> ActionReport:
        """Send a signal to every running process ``target`` names.

        Raises:
            InvalidArgument: ``sig`` is not a signal.
        """

        async def run() -> ActionReport:
            parsed = parse_signal(sig)
            return await self._apply(Command.SIGNAL, target, lambda c: _signal_one(c, parsed))

        return await self._audited(actor, Command.SIGNAL, target, run, detail=f"signal {sig}")

    # -- admin ---------------------------------------------------------------

    async def reload(self, actor: Actor) -> ReloadResult:
        """Re-read the config file and apply it to the fleet.

        New programs start, removed ones stop, changed ones restart, the rest
        keep running untouched.

        Raises:
            ConfigError: the file is now invalid (or moves ``state_dir``); the
                fleet is left untouched.
        """
        return await self._audited(actor, Command.RELOAD, "", self._reload)

    async def shutdown(self, actor: Actor) -> ShutdownReport:
        """Ask the node to stop every process and exit; returns at once."""

        async def run() -> ShutdownReport:
            self._fleet.request_shutdown()
            return ShutdownReport(node=self._fleet.config.supervisor.name)

        return await self._audited(actor, Command.SHUTDOWN, "", run)

    # -- internals -----------------------------------------------------------

    def _check(self, actor: Actor, command: Command) -> None:
        if actor.level < command.required_level:
            raise AccessDenied(
                actor.name, command.value, command.required_level.name, actor.level.name
            )

    def _resolve(self, target: str) -> list[ChildProcess]:
        return self._fleet.resolve(target)

    async def _audited(
        self,
        actor: Actor,
        command: Command,
        target: str,
        run: Callable[[], Awaitable[R]],
        *,
        detail: str = "",
    ) -> R:
        """Check access, run the command and record its audit row either way."""
        try:
            self._check(actor, command)
            result = await run()
        except (AccessDenied, ConfigError, InvalidArgument) as exc:
            await self._audit(actor, command, target, "refused", str(exc))
            raise
        except BaseException as exc:
            await self._audit(actor, command, target, "failed", _describe(exc))
            raise
        outcome: Outcome = "ok"
        if isinstance(result, ActionReport) and not result.is_ok:
            outcome = "failed"
        await self._audit(actor, command, target, outcome, _summary(result, detail))
        return result

    async def _audit(
        self, actor: Actor, command: Command, target: str, outcome: Outcome, detail: str
    ) -> None:
        """Write one audit row; shielded and bounded so a cancelled command is recorded."""
        logger.info(
            "command %s %s by %s (%s): %s %s",
            command,
            target,
            actor.name,
            actor.source,
            outcome,
            detail,
        )
        with anyio.move_on_after(_AUDIT_TIMEOUT, shield=True) as scope:
            await anyio.to_thread.run_sync(
                lambda: self._fleet.ledger.record_audit(
                    actor=actor.name,
                    source=actor.source,
                    command=command.value,
                    target=target,
                    outcome=outcome,
                    detail=detail,
                )
            )
        if scope.cancelled_caught:
            logger.error(
                "audit row for %s %s by %s not written in time", command, target, actor.name
            )

    async def _act(
        self,
        actor: Actor,
        command: Command,
        target: str,
        one: Callable[[ChildProcess, Actor], Awaitable[ProcessResult]],
    ) -> ActionReport:
        return await self._audited(
            actor, command, target, lambda: self._apply(command, target, lambda c: one(c, actor))
        )

    async def _apply(
        self,
        command: Command,
        target: str,
        one: Callable[[ChildProcess], Awaitable[ProcessResult]],
    ) -> ActionReport:
        """Run ``one`` on every process ``target`` names, in parallel, in order."""
        children = self._resolve(target)
        results: list[ProcessResult | None] = [None] * len(children)

        async def run(i: int, child: ChildProcess) -> None:
            results[i] = await one(child)

        async with anyio.create_task_group() as tg:
            for i, child in enumerate(children):
                tg.start_soon(run, i, child)
        return ActionReport(
            command=command, target=target, processes=tuple(r for r in results if r is not None)
        )

    async def _status(self, target: str) -> StatusReport:
        statuses = [c.status() for c in self._resolve(target)]
        pids = [s.pid for s in statuses if s.pid is not None]
        stats = await self._fleet.reaper.stats(pids) if pids else {}
        rows = []
        for st in statuses:
            got = stats.get(st.pid) if st.pid is not None else None
            rows.append(
                ProcessInfo(
                    status=st,
                    rss_bytes=got.rss if got else None,
                    cpu_percent=got.cpu_percent if got else None,
                    nprocs=got.nprocs if got else None,
                )
            )
        return StatusReport(
            node=self._fleet.config.supervisor.name, at=time.time(), processes=tuple(rows)
        )

    async def _tail_one(self, child: ChildProcess, n: int, stream: Stream) -> LogLines:
        path = log_paths(self._fleet.state.log_dir, child.name)[_stream_index(stream)]
        got = await anyio.to_thread.run_sync(
            lambda: tail_lines(path, n, max_line_bytes=child.spec.max_line_bytes)
        )
        return LogLines(process=child.name, stream=stream, lines=tuple(got))

    async def _follow_one(
        self, child: ChildProcess, stream: Stream, send: MemoryObjectSendStream[LogLines]
    ) -> None:
        """Hand over new lines of one log until cancelled; never blocks the follower."""
        dropped = 0

        def deliver(lines: list[str]) -> None:
            nonlocal dropped
            chunk = LogLines(process=child.name, stream=stream, lines=tuple(lines), dropped=dropped)
            try:
                send.send_nowait(chunk)
            except anyio.WouldBlock:
                dropped += len(lines)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the consumer left; cancellation follows
            else:
                dropped = 0

        path = log_paths(self._fleet.state.log_dir, child.name)[_stream_index(stream)]
        with send:
            await follow(
                path,
                deliver,
                max_line_bytes=child.spec.max_line_bytes,
                poll_seconds=self._poll_interval,
            )

    async def _reload(self) -> ReloadResult:
        old = self._fleet.config
        new = await anyio.to_thread.run_sync(load_config, old.path)
        if new.supervisor.state_dir != old.supervisor.state_dir:
            raise ConfigError(
                old.path,
                [ConfigIssue("supervisor.state_dir", "cannot change while dsup runs; restart it")],
            )
        return await self._fleet.reload(new)


# -- one process ---------------------------------------------------------------


async def _start_one(child: ChildProcess, actor: Actor) -> ProcessResult:
    return await _transition(
        child, lambda: child.start(reason=f"started by {actor.name}"), wanted_alive=True
    )


async def _stop_one(child: ChildProcess, actor: Actor) -> ProcessResult:
    return await _transition(
        child, lambda: child.stop(reason=f"stopped by {actor.name}"), wanted_alive=False
    )


async def _restart_one(child: ChildProcess, actor: Actor) -> ProcessResult:
    return await _transition(
        child,
        lambda: child.restart(reason=f"restarted by {actor.name}"),
        wanted_alive=True,
        is_restart=True,
    )


async def _transition(
    child: ChildProcess,
    action: Callable[[], Awaitable[ProcessStatus]],
    *,
    wanted_alive: bool,
    is_restart: bool = False,
) -> ProcessResult:
    """Run a state change; ``unchanged`` when the process is already as wanted."""
    if not is_restart and _is_settled(child.status().state, wanted_alive=wanted_alive):
        st = child.status()
        return _result(st, "unchanged", f"already {st.state.value}")
    try:
        st = await action()
    except InvalidTransition as exc:
        st = child.status()
        settled = _is_settled(st.state, wanted_alive=wanted_alive)
        return _result(st, "unchanged" if settled else "failed", str(exc))
    except SupervisorError as exc:  # SpawnError and friends: this process only
        return _result(child.status(), "failed", str(exc))
    if wanted_alive and not _is_up(st.state):
        return _result(st, "failed", _why_down(st))
    return _result(st, "ok", "")


async def _signal_one(child: ChildProcess, sig: signal.Signals) -> ProcessResult:
    try:
        child.send_signal(sig)
    except InvalidTransition as exc:
        return _result(child.status(), "failed", str(exc))
    return _result(child.status(), "ok", "")


def _is_up(state: ProcessState) -> bool:
    return state in (ProcessState.STARTING, ProcessState.RUNNING)


def _is_settled(state: ProcessState, *, wanted_alive: bool) -> bool:
    """Already where a start (up) or a stop (STOPPED) would take it."""
    return _is_up(state) if wanted_alive else state is ProcessState.STOPPED


def _why_down(st: ProcessStatus) -> str:
    if st.last_error:
        return st.last_error
    if st.last_exit_signal is not None:
        return f"killed by signal {st.last_exit_signal}"
    if st.last_exit_code is not None:
        return f"exited with status {st.last_exit_code}"
    return "did not come up"


def _result(st: ProcessStatus, outcome: ProcessOutcome, message: str) -> ProcessResult:
    return ProcessResult(
        process=st.process, outcome=outcome, state=st.state, pid=st.pid, message=message
    )


# -- small helpers -------------------------------------------------------------


def _tail_count(lines: int) -> int:
    if lines < 0:
        raise InvalidArgument("tail", "lines", lines, "give a count >= 0")
    return min(lines, MAX_TAIL_LINES)


def _stream_index(stream: Stream) -> int:
    return 0 if stream == "stdout" else 1


def _describe(exc: BaseException) -> str:
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return "cancelled"
    return f"{type(exc).__name__}: {exc}"


def _summary(result: object, detail: str) -> str:
    """A short audit detail: failures by process, or what a reload changed."""
    parts = [detail] if detail else []
    if isinstance(result, ActionReport):
        bad = [f"{p.process}: {p.message}" for p in result.processes if p.outcome == "failed"]
        parts.append(f"{len(result.processes)} processes")
        parts.extend(bad)
    elif not isinstance(result, TailReport | StatusReport):
        parts.append(str(result))
    return "; ".join(parts)
