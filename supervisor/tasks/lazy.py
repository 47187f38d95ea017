"""A node's task queue, made when first needed: most nodes take no tasks and never load it.

It is made at start-up when a program takes tasks, ``[discord]`` is configured or the
ledger holds tasks; otherwise by the first task command, worker's task message or reload
that adds a program taking tasks. Until then it answers as an empty queue would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from anyio.abc import TaskGroup, TaskStatus

    from supervisor.config.schema import Config
    from supervisor.process.fleet import Fleet
    from supervisor.process.worker_link import WorkerLink
    from supervisor.tasks.queue import TaskQueue
    from supervisor.tasks.store import TaskStore


class LazyTaskQueue:
    """The node's :class:`~supervisor.tasks.queue.TaskQueue`, made by :meth:`get`.

    Use ``await task_group.start(lazy.run)``: the queue runs in its group once
    made. It is the fleet's task broker too (it sets ``Fleet.tasks``): workers
    spawned before the queue was made reach it through this one.
    """

    def __init__(self, fleet: Fleet, store: TaskStore, **options: float) -> None:
        """Make the queue of ``fleet``'s node over ``store`` when needed.

        ``options`` are the queue's keyword arguments.
        """
        self._fleet = fleet
        fleet.tasks = self
        self._options = options
        self._store = store
        self._tg: TaskGroup | None = None
        self._lock = anyio.Lock()
        config = fleet.config
        needed = config.discord is not None or _takes_tasks(config)
        # Made now if needed: the bridge follows it from its start (one small read otherwise).
        self.made = self._make(config) if needed or store.recent(1) else None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the queue (made already, or once made) until cancelled.

        Calls ``task_status.started()`` once a queue made at start-up has done its recovery.
        """
        async with anyio.create_task_group() as tg:
            if self.made is not None:
                await tg.start(self.made.run)
            self._tg = tg
            task_status.started()
            await anyio.sleep_forever()

    async def get(self, config: Config | None = None) -> TaskQueue:
        """The queue, made and started (its recovery done) on the first call.

        Made for ``config`` (the fleet's by default): a reload gives the one the
        fleet is about to take, whose node name the queue's claims and attempts carry.
        """
        async with self._lock:
            if self.made is None:
                assert self._tg is not None, "the lazy task queue is not running"
                queue = self._make(config or self._fleet.config)
                await self._tg.start(queue.run)
                self.made = queue
            return self.made

    async def reloading(self, config: Config) -> None:
        """The fleet is about to take ``config``: the queue is made first if a program
        of it takes tasks, so the workers the reload launches find it when they ask."""
        if _takes_tasks(config):
            await self.get(config)

    def reloaded(self) -> None:
        """The fleet took a new config: the queue, if made, looks at the store again."""
        if self.made is not None:
            self.made.reconfigured()

    def _make(self, config: Config) -> TaskQueue:
        from supervisor.tasks.queue import queue_for  # here: memory at rest

        return queue_for(self._fleet, self._store, node=config.supervisor.name, **self._options)

    # -- the fleet's task broker (process.worker_link.TaskBroker) -----------------

    def take(self, link: WorkerLink) -> bool:
        """No program took tasks while the queue was not made: False."""
        return self.made is not None and self.made.take(link)

    async def answered(self, link: WorkerLink, task_id: int, *, ok: bool, text: str) -> None:
        """A worker's answer, for the queue."""
        await (await self.get()).answered(link, task_id, ok=ok, text=text)

    async def left(self, link: WorkerLink) -> None:
        """A worker's channel ended; nothing to do if the queue was not made."""
        if self.made is not None:
            await self.made.left(link)

    async def submit_from(self, link: WorkerLink, program: str, text: str) -> int:
        """A worker gives a task: the queue takes or refuses it."""
        return await (await self.get()).submit_from(link, program, text)

    def wait_for(self, link: WorkerLink, request: object, task_id: int, timeout: float) -> None:
        """A worker waits for a task: the queue answers it."""
        assert self._tg is not None, "the lazy task queue is not running"

        async def answer() -> None:
            (await self.get()).wait_for(link, request, task_id, timeout)

        self._tg.start_soon(answer)


def _takes_tasks(config: Config) -> bool:
    """Whether a program of ``config`` takes tasks."""
    return any(p.tasks is not None for p in config.programs.values())
