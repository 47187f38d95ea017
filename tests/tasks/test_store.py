"""The sqlite task store: claims by attempt, leases, recovery, limits, idempotence."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from supervisor.errors import TaskBacklogFull, TaskFinished, UnknownTask
from supervisor.state.ledger import Ledger
from supervisor.tasks.records import NewTask, TaskOutcome, TaskState
from supervisor.tasks.store import SqliteTaskStore
from tests._ledger_full import ledger_full

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteTaskStore]:
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        yield SqliteTaskStore(ledger, keep=5)


def _new(text: str = "t", *, key: str | None = None, attempts: int = 3) -> NewTask:
    return NewTask(
        program="p", text=text, source="local", author="a", source_key=key, max_attempts=attempts
    )


DONE = TaskOutcome(state=TaskState.DONE, result="ok", exit_code=0)


def test_store_claims_oldest_first_and_completes_only_with_the_claiming_attempt(
    store: SqliteTaskStore,
) -> None:
    first, _ = store.submit(_new("one"), backlog=10, now=1.0)
    second, _ = store.submit(_new("two"), backlog=10, now=2.0)
    claimed = store.claim("p", owner="n1", lease_until=100.0, now=3.0)
    assert claimed is not None
    assert (claimed.id, claimed.state, claimed.attempts) == (first.id, TaskState.RUNNING, 1)
    assert store.claim("other", owner="n1", lease_until=100.0, now=3.0) is None
    # The claim expires and another attempt takes the task: the first one's end is void.
    assert store.requeue_expired(now=200.0)[0].state is TaskState.QUEUED
    again = store.claim("p", owner="n2", lease_until=300.0, now=201.0)
    assert again is not None
    assert (again.id, again.attempts) == (first.id, 2)
    assert store.complete(first.id, 1, DONE, now=202.0) is None
    assert store.renew(first.id, 1, lease_until=400.0) is None
    renewed = store.renew(first.id, 2, lease_until=400.0)
    assert renewed is not None
    assert renewed.lease_until == 400.0
    done = store.complete(first.id, 2, DONE, now=203.0)
    assert done is not None
    assert (done.state, done.result, done.owner) == (TaskState.DONE, "ok", None)
    assert store.get(second.id).state is TaskState.QUEUED


def test_store_requeues_a_dead_owners_tasks_then_fails_them_after_max_attempts(
    store: SqliteTaskStore,
) -> None:
    store.submit(_new(attempts=2), backlog=10, now=1.0)
    for attempt in (1, 2):
        claimed = store.claim("p", owner="node", lease_until=1e12, now=2.0)
        assert claimed is not None
        assert claimed.attempts == attempt
        assert store.requeue_expired(now=3.0) == []  # the lease still holds
        (changed,) = store.requeue_expired(now=3.0, dead_owners=["node"])
    assert changed.state is TaskState.FAILED
    assert changed.reason == (
        "its node stopped during each of its 2 attempts (task_max_attempts = 2)"
    )
    assert changed.ended_at == 3.0


def test_store_release_gives_a_task_back_without_counting_the_attempt(
    store: SqliteTaskStore,
) -> None:
    task, _ = store.submit(_new(), backlog=10, now=1.0)
    store.claim("p", owner="n", lease_until=50.0, now=2.0)
    store.release(task.id, 1, reason="queued again: dsup stopped meanwhile")
    back = store.get(task.id)
    assert (back.state, back.attempts) == (TaskState.QUEUED, 0)


def test_store_cancel_ends_queued_marks_running_refuses_final(store: SqliteTaskStore) -> None:
    running, _ = store.submit(_new("r"), backlog=10, now=1.0)
    queued, _ = store.submit(_new("q"), backlog=10, now=1.0)
    store.claim("p", owner="n", lease_until=50.0, now=2.0)
    assert store.cancel(queued.id, by="bob", now=3.0).state is TaskState.CANCELLED
    marked = store.cancel(running.id, by="bob", now=3.0)
    assert (marked.state, marked.cancel_by) == (TaskState.RUNNING, "bob")
    renewed = store.renew(running.id, 1, lease_until=60.0)
    assert renewed is not None
    assert renewed.cancel_by == "bob"
    with pytest.raises(TaskFinished):
        store.cancel(queued.id, by="bob", now=4.0)
    with pytest.raises(UnknownTask):
        store.cancel(999, by="bob", now=4.0)


def test_store_submit_is_idempotent_by_source_key_and_bounded(store: SqliteTaskStore) -> None:
    first, created = store.submit(_new(key="msg-1"), backlog=2, now=1.0)
    again, created_again = store.submit(_new("other", key="msg-1"), backlog=2, now=2.0)
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert again.text == "t"
    store.submit(_new(), backlog=2, now=3.0)
    with pytest.raises(TaskBacklogFull):
        store.submit(_new(), backlog=2, now=4.0)
    assert store.counts() == {"p": {TaskState.QUEUED: 2}}


def test_store_drops_old_finished_tasks_but_never_waiting_ones(store: SqliteTaskStore) -> None:
    waiting, _ = store.submit(_new("keep me"), backlog=100, now=0.0)
    for i in range(12):
        task, _ = store.submit(_new(str(i)), backlog=100, now=float(i))
        store.cancel(task.id, by="x", now=float(i))
    ids = [t.id for t in store.recent(100)]
    assert waiting.id in ids
    assert len(ids) == 1 + 5


def test_store_marks_a_task_replied_on_a_full_disk_later(tmp_path: Path) -> None:
    """A full disk made marking a task replied raise: the bridge's task desk failed."""
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        store = SqliteTaskStore(ledger)
        task, _ = store.submit(replace(_new(), reply_channel=5, reply_to=6), backlog=10, now=1.0)
        assert store.cancel(task.id, by="a", now=2.0).state is TaskState.CANCELLED
        assert [t.id for t in store.unreplied(10)] == [task.id]
        with ledger_full(ledger):
            _pack_tasks(ledger)
            store.mark_replied(task.id, now=3.0)
            assert ledger.unrecorded == 1
        assert ledger.retry_deferred()
        assert store.unreplied(10) == []


def _pack_tasks(ledger: Ledger) -> None:
    """Grow every row of the tasks table until none grows: no byte left in their pages."""
    ids = [row["id"] for row in ledger.read("SELECT id FROM tasks")]
    for task_id in ids:
        for size in (64, 8, 1):
            for _ in range(1000):  # bounded: a page holds 4 KiB
                try:
                    ledger.write(
                        "UPDATE tasks SET reason = reason || ? WHERE id = ?",
                        [("x" * size, task_id)],
                    )
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorname != "SQLITE_FULL":
                        raise
                    break
