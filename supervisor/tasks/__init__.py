"""Tasks from ctl (and later Discord and workers): the queue, its dispatch and its store.

The store sits behind one small interface (``store.TaskStore``): sqlite in the
node's ledger now, a database shared by several nodes later.
"""

from __future__ import annotations

from supervisor.tasks.queue import TaskContext, TaskQueue, queue_for
from supervisor.tasks.records import NewTask, TaskOutcome, TaskRecord, TaskState
from supervisor.tasks.store import SqliteTaskStore, TaskStore

__all__ = [
    "NewTask",
    "SqliteTaskStore",
    "TaskContext",
    "TaskOutcome",
    "TaskQueue",
    "TaskRecord",
    "TaskState",
    "TaskStore",
    "queue_for",
]
