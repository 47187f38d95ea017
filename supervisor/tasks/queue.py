"""The task queue of a node: tasks in, dispatched to their programs' processes, results out.

A task is stored before it is acknowledged and leased while it runs; tasks a dead node was
running are queued again at start-up (at least once, up to ``task_max_attempts``).
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from supervisor.config.schema import TaskMode
from supervisor.errors import InvalidArgument, NotATaskProgram, Unavailable, UnknownTask
from supervisor.output.logfile import backup_path, log_paths
from supervisor.state.ledger import is_no_room
from supervisor.tasks import files
from supervisor.tasks.records import MAX_TASK_TEXT_BYTES, NewTask, TaskOutcome, TaskState
from supervisor.tasks.stream import StreamWorkers, run_stream_attempt
from worker_sdk import protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping
    from pathlib import Path

    from anyio.abc import TaskGroup, TaskStatus

    from supervisor.config.schema import ProgramSpec
    from supervisor.events import Event
    from supervisor.process.fleet import Fleet
    from supervisor.process.questions import QuestionDesk
    from supervisor.process.run import Run
    from supervisor.process.worker_link import WorkerLink
    from supervisor.reaper.reaper import Reaper
    from supervisor.state.ledger import Ledger
    from supervisor.state.worker_store import WorkerStore
    from supervisor.tasks.records import TaskRecord, TaskSource
    from supervisor.tasks.store import TaskStore

logger = logging.getLogger(__name__)

LEASE_SECONDS = 60.0
"""How long a claim lasts unless renewed (renewed every third of it while the task runs)."""
POLL_SECONDS = 1.0
"""How often the queue looks at the store without being woken (another node's tasks), while
a program takes tasks: without one the queue sleeps until woken (a reload, a task)."""
LOGS_KEEP = 1000
"""Task log files kept: those of the last this many tasks."""
_STORE_SECONDS = 10.0  # the longest a shielded write of an attempt's end may take


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskContext:
    """What every attempt of a node shares.

    Attributes:
        node: the ``DSUP_NODE`` marker.
        instance_id: the ``DSUP_INSTANCE`` marker.
        log_dir: where each task's ``PROGRAM-taskID.out.log`` / ``.err.log`` go.
        work_dir: where each attempt gets its fresh directory (``ID/``).
        ledger: records each attempt's run and pids, as for every run.
        reaper: ends the attempt's tree.
        emit: takes the worker events of attempts (results, questions); must not block.
        desk: the node's questions; with ``store``, attempts get a channel (``DSUP_FD``).
        store: where worker results are recorded.
        clock: monotonic seconds.
    """

    node: str
    instance_id: str
    log_dir: Path
    work_dir: Path
    ledger: Ledger
    reaper: Reaper
    emit: Callable[[Event], None] = lambda event: None
    desk: QuestionDesk | None = None
    store: WorkerStore | None = None
    clock: Callable[[], float] = anyio.current_time


@dataclass(slots=True)
class _Attempt:
    """An attempt running here: its task as claimed, and how to cancel it."""

    task: TaskRecord
    cancel: anyio.CancelScope
    done: anyio.Event
    cancelled_by: str = ""


class TaskQueue:
    """Takes tasks, runs them on their programs and records how they end.

    Use ``await task_group.start(queue.run)``; cancelling it stops every running
    attempt's tree and gives those tasks back to the queue for the next start.
    """

    def __init__(
        self,
        store: TaskStore,
        ctx: TaskContext,
        programs: Callable[[], Mapping[str, ProgramSpec]],
        *,
        lease_seconds: float = LEASE_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        chat: Callable[[], int | None] = lambda: None,
    ) -> None:
        """Serve the tasks of ``store``.

        Args:
            store: where tasks live.
            ctx: what attempts share (markers, directories, ledger, reaper).
            programs: the current programs (the config may be reloaded).
            lease_seconds: how long a claim lasts unless renewed.
            poll_seconds: how often the store is looked at unprompted.
            chat: the chat channel (Discord's ``task_channel``) where tasks that
                workers give are shown and answered, if any.
        """
        self._store = store
        self._ctx = ctx
        self._programs = programs
        self._lease = lease_seconds
        self._poll = poll_seconds
        self._chat = chat
        self._files = files.files_root(ctx.work_dir)
        self._running: dict[int, _Attempt] = {}
        self._runs: dict[str, Run] = {}
        self._streams = StreamWorkers()
        self._waiters: dict[int, anyio.Event] = {}
        self._wake = anyio.Event()
        self._tg: TaskGroup | None = None
        self._listeners: list[Callable[[TaskRecord], None]] = []
        self._counts: Mapping[str, Mapping[TaskState, int]] = {}

    def live_run_ids(self) -> set[str]:
        """The runs of attempts under way (the reaper's sweeps spare them)."""
        return set(self._runs)

    def live_pids(self) -> set[int]:
        """The main processes of attempts not yet reaped."""
        return {run.pid for run in self._runs.values() if not run.exited.is_set()}

    def counts(self) -> Mapping[str, Mapping[TaskState, int]]:
        """Queued and running tasks per program, as of the dispatcher's last look."""
        return self._counts

    def watch(self, listener: Callable[[TaskRecord], None]) -> None:
        """Tell ``listener`` each task as it is queued, starts and ends (must not block)."""
        self._listeners.append(listener)

    # -- the workers of stream programs (a process.worker_link.TaskBroker) -------

    def take(self, link: WorkerLink) -> bool:
        """A worker is ready for tasks; False unless its program is a stream program."""
        spec = self._programs().get(link.program)
        if spec is None or spec.tasks is not TaskMode.STREAM:
            return False
        self._streams.add(link)
        self._wake.set()
        return True

    async def submit_from(self, link: WorkerLink, program: str, text: str) -> int:
        """A worker gives a task (``worker_sdk.submit``): authored by its process."""
        task = await self.submit(
            program, text, source="worker", author=link.process, reply_channel=self._chat()
        )
        return task.id

    def wait_for(self, link: WorkerLink, request: object, task_id: int, timeout: float) -> None:
        """Answer a worker's ``task_wait`` once the task ends, or after ``timeout`` seconds."""
        assert self._tg is not None
        self._tg.start_soon(self._answer_wait, link, request, task_id, timeout)

    async def _answer_wait(
        self, link: WorkerLink, request: object, task_id: int, seconds: float
    ) -> None:
        message: dict[str, object] = {protocol.TYPE: protocol.TASK_RESULT, "id": request}
        try:
            task = await self.wait(task_id, seconds)
        except UnknownTask as exc:
            link.send({protocol.TYPE: protocol.ERROR, "id": request, "message": str(exc)})
            return
        message |= {
            "task": task.id,
            "state": task.state.value,
            "result": task.result,
            "reason": task.reason,
        }
        link.send(message)

    async def answered(self, link: WorkerLink, task_id: int, *, ok: bool, text: str) -> None:
        """A stream worker answered a task."""
        outcome = (
            TaskOutcome(state=TaskState.DONE, result=text)
            if ok
            else TaskOutcome(state=TaskState.FAILED, reason=text)
        )
        if not self._streams.answer(link, task_id, outcome):
            logger.info("task %d: a late answer from %s is ignored", task_id, link.process)

    async def left(self, link: WorkerLink) -> None:
        """A stream worker's channel ended."""
        self._streams.remove(link)

    # -- requests ----------------------------------------------------------------

    def files_dir(self, source_key: str) -> Path:
        """Where the files of the task submitted with ``source_key`` go, before submitting it.

        They are copied into each attempt's directory (a stream worker gets their
        paths) and removed when the task ends.
        """
        return files.inbox(self._files, source_key)

    def reconfigured(self) -> None:
        """The programs changed (a reload): look at the store again now."""
        self._wake.set()

    def takers(self) -> list[str]:
        """The programs that take tasks."""
        return [name for name, spec in self._programs().items() if spec.tasks is not None]

    async def submit(
        self,
        program: str,
        text: str,
        *,
        source: TaskSource,
        author: str,
        source_key: str | None = None,
        reply_channel: int | None = None,
        reply_to: int | None = None,
    ) -> TaskRecord:
        """Record a task (durably, before returning) and wake the dispatcher.

        ``source_key`` makes it idempotent (a chat message id); ``reply_channel``
        and ``reply_to`` say where a chat front end answers it.

        Returns:
            The task: new, or the one already submitted with ``source_key``.

        Raises:
            NotATaskProgram: ``program`` takes no tasks.
            InvalidArgument: the text is empty, too long or holds a NUL.
            TaskBacklogFull: the program has ``task_backlog`` tasks waiting.
            Unavailable: the ledger cannot record it (a full disk).
        """
        spec = self._programs().get(program)
        if spec is None or spec.tasks is None:
            raise NotATaskProgram(program, self.takers())
        _check_text(text)
        task = NewTask(
            program=program,
            text=text,
            source=source,
            author=author,
            source_key=source_key,
            max_attempts=spec.task_max_attempts,
            reply_channel=reply_channel,
            reply_to=reply_to,
        )
        try:
            record, created = await anyio.to_thread.run_sync(
                lambda: self._store.submit(task, backlog=spec.task_backlog, now=time.time())
            )
        except sqlite3.OperationalError as exc:
            if not is_no_room(exc):
                raise
            raise Unavailable(
                "task", f"the ledger cannot record it now ({exc}); try again later"
            ) from exc
        if created:
            logger.info("task %d for %s queued by %s", record.id, program, author)
            self._wake.set()
            self._tell(record)
        return record

    async def cancel(self, task_id: int, *, by: str) -> TaskRecord:
        """Cancel a task: a queued one at once, a running one by stopping its tree.

        Returns:
            The task once it has ended here (a task running on another node
            sharing the store ends when that node next renews its claim).

        Raises:
            UnknownTask: no such task.
            TaskFinished: it has already ended.
        """
        record = await anyio.to_thread.run_sync(
            lambda: self._store.cancel(task_id, by=by, now=time.time())
        )
        attempt = self._running.get(task_id)
        if record.state.is_final:
            self._finished(record)
        elif attempt is not None:
            self._stop(attempt, by)
            await attempt.done.wait()
            record = await anyio.to_thread.run_sync(self._store.get, task_id)
        return record

    async def wait(self, task_id: int, timeout: float) -> TaskRecord:  # noqa: ASYNC109
        """The task once it has ended, or as it is after ``timeout`` seconds.

        Raises:
            UnknownTask: no such task.
        """
        with anyio.move_on_after(timeout):
            while True:
                ended = self._waiters.setdefault(task_id, anyio.Event())
                record = await anyio.to_thread.run_sync(self._store.get, task_id)
                if record.state.is_final:
                    return record
                with anyio.move_on_after(self._poll):  # also sees other nodes' results
                    await ended.wait()
        return await anyio.to_thread.run_sync(self._store.get, task_id)

    async def recent(self, limit: int) -> list[TaskRecord]:
        """The latest tasks, newest first."""
        return await anyio.to_thread.run_sync(self._store.recent, limit)

    async def is_submitted(self, source_key: str) -> bool:
        """Whether a task was submitted with ``source_key`` (a chat message id)."""
        return await anyio.to_thread.run_sync(self._store.is_submitted, source_key)

    async def unreplied(self, limit: int = 100) -> list[TaskRecord]:
        """Ended tasks whose chat answer is not queued yet, oldest first."""
        return await anyio.to_thread.run_sync(self._store.unreplied, limit)

    async def mark_replied(self, task_id: int) -> None:
        """Note that a task's chat answer is queued."""
        await anyio.to_thread.run_sync(lambda: self._store.mark_replied(task_id, now=time.time()))

    # -- the queue's task ----------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Recover what this node was running when it died, then dispatch until cancelled."""
        for path in (self._ctx.log_dir, self._ctx.work_dir):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        await self._requeue(dead_owners=(self._ctx.node,))
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._keep_leases)
            task_status.started()
            woken = True
            while True:
                self._wake = anyio.Event()
                # Unprompted, the store is looked at only while a program takes tasks: a
                # node without any sleeps until woken (a reload adding one wakes it).
                takers = bool(self.takers())
                if woken or takers:
                    await self._dispatch()
                    self._counts = await anyio.to_thread.run_sync(self._store.counts)
                if takers:
                    with anyio.move_on_after(self._poll):
                        await self._wake.wait()
                else:
                    await self._wake.wait()
                woken = self._wake.is_set()

    async def _dispatch(self) -> None:
        """Start attempts of queued tasks while their programs have room."""
        assert self._tg is not None
        for spec in list(self._programs().values()):
            if spec.tasks is None:
                continue
            busy = sum(1 for a in self._running.values() if a.task.program == spec.name)
            while busy < spec.concurrency:
                consumer = self._streams.pick(spec.name)
                if spec.tasks is TaskMode.STREAM and consumer is None:
                    break  # no worker takes tasks (yet)
                task = await anyio.to_thread.run_sync(self._claim, spec.name)
                if task is None:
                    break
                attempt = _Attempt(task, anyio.CancelScope(), anyio.Event())
                self._running[task.id] = attempt
                self._tell(task)
                busy += 1
                if consumer is None:
                    # Loaded with the first oneshot task, not by every node (memory).
                    from supervisor.tasks.oneshot import run_attempt

                    run = functools.partial(
                        run_attempt, spec, task, self._ctx, attempt.cancel, self._runs, self
                    )
                else:
                    paths = tuple(str(p) for p in files.held(self._files, task))
                    run = functools.partial(
                        run_stream_attempt, spec, task, consumer, attempt.cancel, paths
                    )
                    consumer.reserve(task.id)  # counted in flight from now on
                self._tg.start_soon(self._attempt, spec, attempt, run)

    def _claim(self, program: str) -> TaskRecord | None:
        now = time.time()
        return self._store.claim(
            program, owner=self._ctx.node, lease_until=now + self._lease, now=now
        )

    def _renew(self, task: TaskRecord) -> TaskRecord | None:
        return self._store.renew(task.id, task.attempts, lease_until=time.time() + self._lease)

    async def _attempt(
        self,
        spec: ProgramSpec,
        attempt: _Attempt,
        run: Callable[[], Awaitable[TaskOutcome]],
    ) -> None:
        """Run one attempt and record its end; on shutdown, give the task back."""
        task = attempt.task
        logger.info("task %d for %s: attempt %d started", task.id, spec.name, task.attempts)
        try:
            try:
                outcome = await run()
            except Exception as exc:  # the attempt's task boundary: the task fails, not dsup
                logger.exception("task %d for %s: attempt failed", task.id, spec.name)
                outcome = TaskOutcome(state=TaskState.FAILED, reason=f"internal error: {exc!r}")
            except BaseException:
                with anyio.move_on_after(_STORE_SECONDS, shield=True):
                    await anyio.to_thread.run_sync(
                        lambda: self._store.release(
                            task.id, task.attempts, reason="queued again: dsup stopped meanwhile"
                        )
                    )
                raise
            if outcome.state is TaskState.CANCELLED:
                outcome = TaskOutcome(
                    state=TaskState.CANCELLED,
                    reason=f"cancelled by {attempt.cancelled_by or 'an operator'}",
                    exit_code=outcome.exit_code,
                    exit_signal=outcome.exit_signal,
                )
            with anyio.CancelScope(shield=True):
                record = await anyio.to_thread.run_sync(
                    lambda: self._store.complete(task.id, task.attempts, outcome, now=time.time())
                )
                await anyio.to_thread.run_sync(
                    forget_logs, self._ctx.log_dir, task.id - LOGS_KEEP, self._programs().values()
                )
        finally:
            del self._running[task.id]
            attempt.done.set()
            self._wake.set()
        if record is None:
            logger.warning("task %d: attempt %d lost its claim meanwhile", task.id, task.attempts)
        else:
            logger.info("task %d for %s: %s", task.id, spec.name, record.state.value)
            self._finished(record)

    async def _keep_leases(self) -> None:
        """Renew the claims of running attempts; queue again the tasks of dead claims."""
        while True:
            await anyio.sleep(self._lease / 3)
            for attempt in list(self._running.values()):
                task = attempt.task
                renewed = await anyio.to_thread.run_sync(self._renew, task)
                if renewed is None:
                    self._stop(attempt, "the queue (its claim expired)")
                elif renewed.cancel_by is not None:
                    self._stop(attempt, renewed.cancel_by)
            await self._requeue()

    async def _requeue(self, dead_owners: tuple[str, ...] = ()) -> None:
        changed = await anyio.to_thread.run_sync(
            lambda: self._store.requeue_expired(now=time.time(), dead_owners=dead_owners)
        )
        for record in changed:
            logger.warning("task %d for %s: %s", record.id, record.program, record.reason)
            if record.state.is_final:
                self._finished(record)
            else:
                self._tell(record)
        if changed:
            self._wake.set()

    def _stop(self, attempt: _Attempt, by: str) -> None:
        if not attempt.cancel.cancel_called:
            attempt.cancelled_by = by
            attempt.cancel.cancel()

    def _finished(self, record: TaskRecord) -> None:
        files.drop(self._files, record)
        waiter = self._waiters.pop(record.id, None)
        if waiter is not None:
            waiter.set()
        self._tell(record)

    def _tell(self, record: TaskRecord) -> None:
        for listener in self._listeners:
            listener(record)


def queue_for(fleet: Fleet, store: TaskStore, *, node: str, **options: float) -> TaskQueue:
    """The task queue of ``fleet``'s node (named ``node``), its runs spared by the fleet's
    reaper.

    Task logs go to ``state_dir/logs/tasks``, attempts' directories under
    ``state_dir/tasks``. ``options`` are the queue's keyword arguments.
    """
    ctx = TaskContext(
        node=node,
        instance_id=fleet.state.instance_id,
        log_dir=fleet.state.log_dir / "tasks",
        work_dir=fleet.state.path / "tasks",
        ledger=fleet.ledger,
        reaper=fleet.reaper,
        emit=fleet.emit,
        desk=fleet.desk,
        store=fleet.store,
    )

    def chat() -> int | None:
        discord = fleet.config.discord
        return discord.task_channel or None if discord is not None else None

    queue = TaskQueue(store, ctx, lambda: fleet.config.programs, chat=chat, **options)
    fleet.track(queue)
    return queue


def forget_logs(log_dir: Path, task_id: int, programs: Iterable[ProgramSpec]) -> None:
    """Delete the log files (and backups) task ``task_id`` of any of ``programs`` left."""
    for spec in programs:
        for path in log_paths(log_dir, f"{spec.name}:task{task_id}"):
            for n in range(spec.log_backups + 1):
                (path if n == 0 else backup_path(path, n)).unlink(missing_ok=True)


def _check_text(text: str) -> None:
    """Refuse a task text no process could be given."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if not text.strip():
        raise InvalidArgument("task", "text", text[:40], "give the task's text")
    if size > MAX_TASK_TEXT_BYTES:
        raise InvalidArgument(
            "task",
            "text",
            f"{text[:40]}...",
            f"at most {MAX_TASK_TEXT_BYTES} bytes of UTF-8, got {size}",
        )
    if "\0" in text:
        raise InvalidArgument("task", "text", text[:40], "a NUL character cannot reach argv")
