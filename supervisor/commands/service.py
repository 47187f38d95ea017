"""The one command surface, shared by ``dsup ctl`` and the Discord bridge.

Every method takes the :class:`Actor` asking, checks its access level first and writes one
audit row whatever happens (``ok``, ``refused`` or ``failed``), so no front end skips either.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

import anyio

from supervisor.commands import audit
from supervisor.commands.access import Actor, Command
from supervisor.commands.action import (
    judge_signals,
    parse_signal,
    restart_one,
    signal_one,
    start_one,
    stop_one,
)
from supervisor.commands.reports import (
    MAX_RESULTS,
    ActionReport,
    AnswerReport,
    AsksReport,
    DiscordSyncReport,
    LogFile,
    LogFilesReport,
    LogFollow,
    LogLines,
    ProcessInfo,
    ProcessResult,
    ResultsReport,
    ShutdownReport,
    StatusReport,
    TailReport,
)
from supervisor.config.schema import TaskMode, load_config
from supervisor.errors import (
    AccessDenied,
    ConfigError,
    ConfigIssue,
    InvalidArgument,
    NotATaskProgram,
    TaskBacklogFull,
    TaskFinished,
    Unavailable,
)
from supervisor.process.slot import STOP_MARGIN_SECONDS
from supervisor.tasks.records import TaskList

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from supervisor.commands.health import HealthSource
    from supervisor.config.schema import Config
    from supervisor.events import Stream
    from supervisor.process.fleet import Fleet, ReloadResult
    from supervisor.process.slot import Slot
    from supervisor.process.status import ProcessStatus
    from supervisor.reaper.stats import ProcStats
    from supervisor.tasks.lazy import LazyTaskQueue
    from supervisor.tasks.queue import TaskQueue
    from supervisor.tasks.records import TaskRecord

logger = logging.getLogger(__name__)

R = TypeVar("R")

_AUDIT_TIMEOUT = 5.0
# After the processes' parallel stop, the last sweep (SIGTERM, 5 s, SIGKILL,
# 5 s) and the exit: added to a shutdown's wait_seconds.
_EXIT_SECONDS = 15.0
# Errors that mean nothing was done: audited as ``refused``, not ``failed``.
_REFUSALS = (
    AccessDenied,
    ConfigError,
    InvalidArgument,
    NotATaskProgram,
    TaskBacklogFull,
    TaskFinished,
    Unavailable,
)
_TASKS_MOST = 1000  # tasks one ``tasks`` answer lists
_CPU_WINDOW = 0.3  # seconds between two CPU samples of a run never measured before


class CommandService:
    """Applies operator commands to a running fleet, with access checks and audit.

    Every method raises ``AccessDenied`` when the actor's level is too low,
    and records an audit row before returning or raising. Cancelling a method
    cancels the command; its audit row is still written (shielded, bounded).
    """

    def __init__(
        self,
        fleet: Fleet,
        *,
        tasks: LazyTaskQueue | None = None,
        poll_interval: float = 0.2,
        follow_buffer_bytes: int | None = None,
        health: HealthSource | None = None,
        farewell_seconds: float = 0.0,
    ) -> None:
        """Serve commands for ``fleet``.

        Args:
            fleet: the running fleet.
            tasks: the node's task queue, made when first needed (None: no
                program takes tasks here).
            poll_interval: how often ``follow`` looks for new log output (seconds).
            follow_buffer_bytes: the most bytes of lines each ``follow`` holds
                for a consumer that has fallen behind; beyond, lines are dropped
                (None: ``commands.tail.FOLLOW_BUFFER_BYTES``).
            health: reads the Discord bridge's health for ``status`` (None: no bridge).
            farewell_seconds: the longest the node takes, once every process is
                stopped and swept, to say goodbye (a bridge empties its outbox and
                closes): added to a shutdown's ``wait_seconds``.
        """
        self._fleet = fleet
        self._tasks = tasks
        self._poll_interval = poll_interval
        self._follow_buffer_bytes = follow_buffer_bytes
        self._measured: set[str] = set()  # runs whose CPU the reaper has sampled
        self._health = health
        self._farewell_seconds = farewell_seconds
        self._discord_sync: Callable[[], Awaitable[DiscordSyncReport]] | None = None

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
            from supervisor.commands.tail import tail_count  # loaded with the first tail

            tail_count(lines)  # a bad count is refused before the target is resolved
            return TailReport(
                logs=tuple([await self._tail_one(c, lines, stream) for c in self._resolve(target)])
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
        ``LogLines.dropped`` (at most ``follow_buffer_bytes`` wait for it); so
        do lines rotation deleted before the follower read them (an estimate).
        The log files keep everything else. Once a reload has removed every
        process followed, the iteration raises ``UnknownProcess``. Leaving the
        block (or cancelling it) stops every follower.

        Raises:
            UnknownProcess: nothing matches ``target``.
            InvalidArgument: ``lines`` is negative.
        """
        from supervisor.commands.tail import FOLLOW_BUFFER_BYTES, open_follow, tail_count

        slots: list[Slot] = []

        async def first() -> TailReport:
            tail_count(lines)  # a bad count is refused before the target is resolved
            slots.extend(self._resolve(target))
            return TailReport(logs=tuple([await self._tail_one(c, lines, stream) for c in slots]))

        report = await self._audited(actor, Command.TAIL, target, first, detail="follow")
        async with open_follow(
            self._fleet,
            target,
            slots,
            report.logs,
            stream,
            poll_interval=self._poll_interval,
            buffer_bytes=(
                FOLLOW_BUFFER_BYTES
                if self._follow_buffer_bytes is None
                else self._follow_buffer_bytes
            ),
        ) as following:
            yield following

    async def log_files(
        self, actor: Actor, target: str, *, stream: Stream = "stdout"
    ) -> LogFilesReport:
        """Where the current log file of each process named is (audited as a ``tail``)."""

        async def run() -> LogFilesReport:
            from supervisor.commands.tail import log_path

            log_dir = self._fleet.state.log_dir
            return LogFilesReport(
                files=tuple(
                    LogFile(process=c.name, stream=stream, path=log_path(log_dir, c, stream))
                    for c in self._resolve(target)
                )
            )

        return await self._audited(actor, Command.TAIL, target, run, detail="log file")

    def target_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Every program name and every process name, in config order: for completion.

        Not audited and not access-checked: it tells only what ``dsup check``
        shows of the config, and a chat client asks it at every key press.
        """
        return tuple(self._fleet.config.programs), tuple(c.name for c in self._fleet.processes())

    def snapshot(self) -> list[ProcessStatus]:
        """Every process's state now, for views that refresh on their own (the board).

        Not a command: no access check, no audit row, no resource sampling.
        """
        return [c.status() for c in self._fleet.processes()]

    # -- operator ------------------------------------------------------------

    async def start(self, actor: Actor, target: str) -> ActionReport:
        """Start every stopped process ``target`` names (waits for RUNNING or failure)."""
        return await self._act(actor, Command.START, target, start_one)

    async def stop(self, actor: Actor, target: str) -> ActionReport:
        """Stop every process ``target`` names, in parallel."""
        return await self._act(actor, Command.STOP, target, stop_one)

    async def restart(self, actor: Actor, target: str) -> ActionReport:
        """Stop then start every process ``target`` names, in parallel."""
        return await self._act(actor, Command.RESTART, target, restart_one)

    async def signal(self, actor: Actor, target: str, sig: str | int) -> ActionReport:
        """Send a signal to every running process ``target`` names.

        Processes that are not running are ``skipped``; they are ``failed``
        when none of the target was running.

        Raises:
            InvalidArgument: ``sig`` is not a signal.
        """

        async def run() -> ActionReport:
            parsed = parse_signal(sig)
            report = await self._apply(Command.SIGNAL, target, lambda c: signal_one(c, parsed))
            return replace(report, processes=judge_signals(report.processes))

        return await self._audited(actor, Command.SIGNAL, target, run, detail=f"signal {sig}")

    # -- tasks -----------------------------------------------------------------

    async def task(
        self,
        actor: Actor,
        program: str,
        text: str,
        *,
        wait_seconds: float | None = None,
        source_key: str | None = None,
        reply_channel: int | None = None,
        reply_to: int | None = None,
    ) -> TaskRecord:
        """Queue a task for ``program`` (recorded before this returns).

        Args:
            actor: who asks (the task's author).
            program: a program that takes tasks.
            text: the task.
            wait_seconds: wait this long for the task to end, and return it then.
            source_key: makes the submission idempotent (a chat message id).
            reply_channel: the chat channel its answer goes to.
            reply_to: the chat message its answer replies to.

        Raises:
            NotATaskProgram: ``program`` takes no tasks.
            InvalidArgument: the text is empty or too long.
            TaskBacklogFull: the program's backlog is full.
        """

        async def run() -> TaskRecord:
            queue = await self._queue(program)
            record = await queue.submit(
                program,
                text,
                source=actor.source,
                author=actor.name,
                source_key=source_key,
                reply_channel=reply_channel,
                reply_to=reply_to,
            )
            if wait_seconds is not None:
                record = await queue.wait(record.id, wait_seconds)
            return record

        return await self._audited(actor, Command.TASK, program, run)

    async def tasks(self, actor: Actor, *, limit: int = 20) -> TaskList:
        """The latest ``limit`` tasks (at most 1000), newest first."""

        async def run() -> TaskList:
            if not 1 <= limit <= _TASKS_MOST:
                raise InvalidArgument("tasks", "limit", limit, f"give 1 to {_TASKS_MOST}")
            queue = self.task_queue  # none made: none was ever queued
            found = await queue.recent(limit) if queue is not None else []
            return TaskList(tasks=tuple(found))

        return await self._audited(actor, Command.TASKS, "", run)

    async def task_cancel(self, actor: Actor, task_id: int) -> TaskRecord:
        """Cancel a queued or running task; a running one's tree is stopped first.

        Raises:
            UnknownTask: no such task.
            TaskFinished: it has already ended.
        """

        async def run() -> TaskRecord:
            return await (await self._queue("")).cancel(task_id, by=actor.name)

        return await self._audited(actor, Command.TASK_CANCEL, str(task_id), run)

    @property
    def task_queue(self) -> TaskQueue | None:
        """The node's task queue, for a chat front end's lifecycle feed and answers.

        Submitting and cancelling go through :meth:`task` and :meth:`task_cancel`
        (access checks, audit); this is for what no user asks: following tasks as
        they change and noting that their answers are queued.
        """
        return self._tasks.made if self._tasks is not None else None

    def task_counts(self) -> dict[str, dict[str, int]]:
        """Queued and running tasks per program, for views that refresh on their own.

        Not a command: no access check, no audit row.
        """
        queue = self.task_queue
        if queue is None:
            return {}
        counts = queue.counts()
        return {p: {s.value: n for s, n in by.items()} for p, by in sorted(counts.items())}

    def task_programs(self) -> list[str]:
        """The programs that take tasks (for autocomplete)."""
        queue = self.task_queue
        return queue.takers() if queue is not None else []

    async def _queue(self, program: str) -> TaskQueue:
        if self._tasks is None:
            raise NotATaskProgram(program, [])
        return await self._tasks.get()

    # -- workers' questions and results ----------------------------------------

    async def asks(self, actor: Actor) -> AsksReport:
        """Every open question of the node's workers, oldest first."""

        async def run() -> AsksReport:
            return AsksReport(questions=tuple(self._fleet.desk.open_questions()))

        return await self._audited(actor, Command.ASKS, "", run)

    async def answer(self, actor: Actor, question_id: int, answer: str) -> AnswerReport:
        """Answer an open question as ``actor``; the first answer wins.

        Raises:
            UnknownQuestion: no open question has this id.
            InvalidArgument: ``answer`` is none of its choices, or empty.
        """

        async def run() -> AnswerReport:
            desk = self._fleet.desk
            question, given = await desk.answer(
                question_id, answer, by=actor.name, source=actor.source
            )
            return AnswerReport(question=question, answer=given, by=actor.name)

        target = f"question {question_id}"
        return await self._audited(actor, Command.ANSWER, target, run, detail=f"answer {answer!r}")

    async def results(self, actor: Actor, target: str, *, limit: int = 10) -> ResultsReport:
        """The latest ``limit`` results (at most MAX_RESULTS) of the processes named.

        Raises:
            InvalidArgument: ``limit`` is not 1 to MAX_RESULTS.
        """

        async def run() -> ResultsReport:
            if not 0 < limit <= MAX_RESULTS:
                raise InvalidArgument("results", "count", limit, f"give 1 to {MAX_RESULTS}")
            names = [slot.name for slot in self._resolve(target)]
            found = await anyio.to_thread.run_sync(
                lambda: self._fleet.store.recent_results(names, limit)
            )
            return ResultsReport(results=tuple(found))

        return await self._audited(actor, Command.RESULTS, target, run)

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
            return ShutdownReport(
                node=self._fleet.config.supervisor.name,
                pid=os.getpid(),
                wait_seconds=_shutdown_seconds(self._fleet.config) + self._farewell_seconds,
            )

        return await self._audited(actor, Command.SHUTDOWN, "", run)

    def set_discord_sync(self, hook: Callable[[], Awaitable[DiscordSyncReport]] | None) -> None:
        """Register (or, with None, remove) the Discord bridge's command sync.

        The command surface cannot import the bridge; the bridge hands it this
        hook while it runs so ``dsup ctl discord-sync`` can reach it.
        """
        self._discord_sync = hook

    async def discord_sync(self, actor: Actor) -> DiscordSyncReport:
        """Register the Discord slash commands again, whether they changed or not.

        Raises:
            Unavailable: no Discord bridge runs in this node.
        """

        async def run() -> DiscordSyncReport:
            if self._discord_sync is None:
                raise Unavailable(Command.DISCORD_SYNC.value, "no Discord bridge runs in this node")
            return await self._discord_sync()

        return await self._audited(actor, Command.DISCORD_SYNC, "", run)

    # -- internals -----------------------------------------------------------

    def _check(self, actor: Actor, command: Command) -> None:
        if actor.level < command.required_level:
            raise AccessDenied(
                actor.name, command.value, command.required_level.name, actor.level.name
            )

    def _resolve(self, target: str) -> list[Slot]:
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
        except _REFUSALS as exc:
            await self._audit(actor, command, target, "refused", str(exc))
            raise
        except BaseException as exc:
            await self._audit(actor, command, target, "failed", audit.describe(exc))
            raise
        outcome = audit.outcome_of(result)
        await self._audit(actor, command, target, outcome, audit.summarize(result, detail))
        return result

    async def _audit(
        self, actor: Actor, command: Command, target: str, outcome: audit.Outcome, detail: str
    ) -> None:
        """Write one audit row; shielded and bounded so a cancelled command is recorded."""
        target, detail = audit.clipped(target, detail)
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
        one: Callable[[Slot, Actor], Awaitable[ProcessResult]],
    ) -> ActionReport:
        return await self._audited(
            actor, command, target, lambda: self._apply(command, target, lambda c: one(c, actor))
        )

    async def _apply(
        self,
        command: Command,
        target: str,
        one: Callable[[Slot], Awaitable[ProcessResult]],
    ) -> ActionReport:
        """Run ``one`` on every process ``target`` names, in parallel, in order."""
        slots = self._resolve(target)
        results: list[ProcessResult | None] = [None] * len(slots)

        async def run(i: int, slot: Slot) -> None:
            results[i] = await one(slot)

        async with anyio.create_task_group() as tg:
            for i, slot in enumerate(slots):
                tg.start_soon(run, i, slot)
        return ActionReport(
            command=command, target=target, processes=tuple(r for r in results if r is not None)
        )

    async def _status(self, target: str) -> StatusReport:
        statuses = [c.status() for c in self._resolve(target)]
        stats = await self._stats(statuses)
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
            node=self._fleet.config.supervisor.name,
            at=time.time(),
            processes=tuple(rows),
            bridge=self._health() if self._health else None,
        )

    async def _stats(self, statuses: list[ProcessStatus]) -> dict[int, ProcStats]:
        """Resource use by pid; a run never measured is sampled twice, ``_CPU_WINDOW`` apart.

        CPU use is relative to the reaper's previous sample of the process, so
        without a second sample a run's first status would always show 0.0%.
        """
        pids = [s.pid for s in statuses if s.pid is not None]
        if not pids:
            return {}
        runs = {s.run_id for s in statuses if s.pid is not None and s.run_id is not None}
        stats = await self._fleet.reaper.stats(pids)
        if runs - self._measured:
            await anyio.sleep(_CPU_WINDOW)
            stats = await self._fleet.reaper.stats(pids)
        live = {s.run_id for c in self._fleet.processes() if (s := c.status()).pid is not None}
        self._measured = (self._measured | runs) & live
        return stats

    async def _tail_one(self, slot: Slot, asked: int, stream: Stream) -> LogLines:
        from supervisor.commands.tail import tail_one  # a resting node never tails: memory

        return await tail_one(self._fleet.state.log_dir, slot, asked, stream)

    async def _reload(self) -> ReloadResult:
        old = self._fleet.config
        new = await anyio.to_thread.run_sync(load_config, old.path)
        if new.supervisor.state_dir != old.supervisor.state_dir:
            raise ConfigError(
                old.path,
                [ConfigIssue("supervisor.state_dir", "cannot change while dsup runs; restart it")],
            )
        if self._tasks is not None:  # the first program that takes tasks: the queue starts
            await self._tasks.reloading(new)
        result = await self._fleet.reload(new)
        if self._tasks is not None:  # a program may take tasks now: the queue looks again
            self._tasks.reloaded()
        return result


def _shutdown_seconds(config: Config) -> float:
    """The longest a shutdown takes up to the last sweep's end.

    The tasks under way stop first (a oneshot task's tree), then every process in
    parallel, then the last sweep: each bounded by the slowest program's stop.
    """
    programs = config.programs.values()
    tasks = [p.stop_timeout_seconds for p in programs if p.tasks is TaskMode.ONESHOT]
    stops = [p.stop_timeout_seconds for p in programs]
    first = max(tasks) + STOP_MARGIN_SECONDS if tasks else 0.0
    return first + max(stops, default=0.0) + STOP_MARGIN_SECONDS + _EXIT_SECONDS
