"""Tasks while the ledger's disk is full: attempts end, cancels work, nothing is lost.

A real node runs real task processes (oneshot, and a stream worker using worker_sdk);
the ledger is a real sqlite file that refuses every write (``tests/_ledger_full.py``)
until space returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from supervisor.commands.access import AccessLevel, Actor
from supervisor.errors import Unavailable
from supervisor.state.ledger import DEFERRED_MAX, Ledger
from supervisor.tasks.records import NewTask, TaskOutcome, TaskState
from supervisor.tasks.store import SqliteTaskStore
from tests._control import running_node, states, write_config
from tests._e2e import alive
from tests._ledger_full import ledger_full, ledger_read_only
from tests._wait import wait_until
from tests.tasks._tasks import held, task_program
from tests.tasks.test_stream import stream_program

if TYPE_CHECKING:
    from pathlib import Path

    from tests._control import Node

pytestmark = pytest.mark.timeout(60)

LOCAL = Actor(name="alice", source="local", level=AccessLevel.OPERATOR)


def _stored(node: Node, task_id: int) -> tuple[str, str]:
    """The task's state and result as the table holds them."""
    (row,) = node.ledger.read("SELECT state, result FROM tasks WHERE id = ?", (task_id,))
    return str(row[0]), str(row[1])


async def test_oneshot_task_ending_on_a_full_disk_is_done_and_stored_when_space_returns(
    tmp_path: Path,
) -> None:
    """A full disk made the attempt's end raise: the queue's task failed and took dsup down."""
    hold = tmp_path / "hold"
    hold.mkdir()
    config = write_config(tmp_path, task_program("held", "hold", str(hold), "echo"))
    async with running_node(config) as node:
        task = await node.service.task(LOCAL, "held", "x" * 30_000)  # a result needing room
        await wait_until(lambda: task.id in held(hold))
        with ledger_full(node.ledger):
            (hold / "go").touch()
            done = await node.tasks.wait(task.id, 20)
            assert (done.state, done.result) == (
                TaskState.DONE,
                f"held {task.id}\n{'x' * 30_000}\n",
            )
            assert _stored(node, task.id)[0] == "running"  # waiting for the disk
            with pytest.raises(Unavailable):
                await node.service.task(LOCAL, "held", "two")
        assert node.ledger.retry_deferred()
        assert _stored(node, task.id) == ("done", done.result)
        again = await node.service.task(LOCAL, "held", "three", wait_seconds=20)
        assert again.state is TaskState.DONE


async def test_stream_worker_answering_on_a_full_disk_lives_on_and_its_answer_is_stored(
    tmp_path: Path,
) -> None:
    """A stream worker's reply on a full disk: the queue raised, and dsup with it."""
    hold = tmp_path / "hold"
    hold.mkdir()
    config = write_config(tmp_path, stream_program("upper", str(hold)))
    async with running_node(config) as node:
        await wait_until(lambda: states(node) == {"upper:0": "RUNNING"})
        text = "hello " * 5000  # an answer needing room
        task = await node.service.task(LOCAL, "upper", text)
        await wait_until(lambda: (hold / "held").exists())
        with ledger_full(node.ledger):
            (hold / "go").touch()
            done = await node.tasks.wait(task.id, 20)
            assert done.state is TaskState.DONE
            assert done.result.startswith("upper: HELLO HELLO")  # cut to a message's size
            assert _stored(node, task.id)[0] == "running"  # waiting for the disk
            assert states(node) == {"upper:0": "RUNNING"}
        assert node.ledger.retry_deferred()
        assert _stored(node, task.id) == ("done", done.result)
        after = await node.service.task(LOCAL, "upper", "again", wait_seconds=20)
        assert (after.state, after.result) == (TaskState.DONE, "upper: AGAIN")
        assert states(node) == {"upper:0": "RUNNING"}


async def test_cancel_on_a_full_disk_stops_the_tree_and_is_stored_when_space_returns(
    tmp_path: Path,
) -> None:
    """Cancelling on a read-only disk raised sqlite's error at the operator."""
    hold = tmp_path / "hold"
    hold.mkdir()
    config = write_config(tmp_path, task_program("held", "hold", str(hold)))
    async with running_node(config) as node:
        first = await node.service.task(LOCAL, "held", "one")
        second = await node.service.task(LOCAL, "held", "two")
        await wait_until(lambda: first.id in held(hold))
        tree = held(hold)[first.id]
        with ledger_read_only(node.ledger):
            queued = await node.service.task_cancel(LOCAL, second.id)
            running = await node.service.task_cancel(LOCAL, first.id)
            assert (queued.state, running.state) == (TaskState.CANCELLED, TaskState.CANCELLED)
            assert running.reason == "cancelled by alice"
            assert not any(alive(p) for p in tree)
        assert node.ledger.retry_deferred()
        assert [_stored(node, t.id)[0] for t in (first, second)] == ["cancelled", "cancelled"]
    assert second.id not in held(hold)


def test_store_on_a_full_disk_claims_nothing_and_writes_ends_in_order_later(
    tmp_path: Path,
) -> None:
    """claim, renew, complete and release raised sqlite's error on a read-only disk."""
    new = NewTask(program="p", text="t", source="local", author="a")
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        store = SqliteTaskStore(ledger)
        ids = [store.submit(new, backlog=10, now=1.0)[0].id for _ in range(3)]
        one = store.claim("p", owner="n", lease_until=10.0, now=2.0)
        two = store.claim("p", owner="n", lease_until=10.0, now=2.0)
        assert one is not None
        assert two is not None
        with ledger_read_only(ledger):
            assert store.claim("p", owner="n", lease_until=10.0, now=3.0) is None
            assert store.requeue_expired(now=99.0, dead_owners=("n",)) == []
            renewed = store.renew(one.id, 1, lease_until=50.0)
            assert renewed is not None
            assert renewed.lease_until == 50.0
            outcome = TaskOutcome(state=TaskState.DONE, result="ok", exit_code=0)
            done = store.complete(one.id, 1, outcome, now=4.0)
            assert done is not None
            assert (done.state, done.result) == (TaskState.DONE, "ok")
            assert store.complete(one.id, 1, outcome, now=4.0) is None  # no longer held
            store.release(two.id, 1, reason="queued again: dsup stopped meanwhile")
            assert (store.get(two.id).state, store.get(two.id).attempts) == (TaskState.QUEUED, 0)
            assert [t.state for t in store.recent(3)][::-1] == [
                TaskState.DONE,
                TaskState.QUEUED,
                TaskState.QUEUED,
            ]
        assert ledger.retry_deferred()
        rows = ledger.read("SELECT id, state, attempts, result FROM tasks ORDER BY id")
        assert [tuple(r) for r in rows] == [
            (ids[0], "done", 1, "ok"),
            (ids[1], "queued", 0, ""),
            (ids[2], "queued", 0, ""),
        ]
        claimed = store.claim("p", owner="n", lease_until=10.0, now=5.0)
        assert claimed is not None
        assert claimed.id == ids[1]


def test_store_end_the_ledger_dropped_is_not_shown_as_done(tmp_path: Path) -> None:
    """Past 10,000 waiting writes, a task's end is lost: the store must not claim it happened."""
    new = NewTask(program="p", text="t", source="local", author="a")
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        store = SqliteTaskStore(ledger)
        task, _ = store.submit(new, backlog=10, now=1.0)
        claimed = store.claim("p", owner="n", lease_until=10.0, now=2.0)
        assert claimed is not None
        with ledger_full(ledger):
            while ledger.unrecorded < DEFERRED_MAX:  # bounded: each call keeps one more
                ledger.record_audit(
                    actor="a", source="local", command="c", target="t", outcome="ok"
                )
            outcome = TaskOutcome(state=TaskState.DONE, result="ok" * 3000, exit_code=0)
            assert store.complete(task.id, 1, outcome, now=4.0) is None
            assert store.get(task.id).state is TaskState.RUNNING
        assert ledger.retry_deferred()
        assert store.get(task.id).state is TaskState.RUNNING  # queued again once its lease ends


def test_store_shows_a_claim_written_after_the_disk_refused_again(tmp_path: Path) -> None:
    """A task kept as released while the disk refused it was still shown queued after it
    had been claimed again, once the disk refused writes anew."""
    new = NewTask(program="p", text="t", source="local", author="a")
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        store = SqliteTaskStore(ledger)
        task, _ = store.submit(new, backlog=10, now=1.0)
        assert store.claim("p", owner="n", lease_until=10.0, now=2.0) is not None
        with ledger_read_only(ledger):
            store.release(task.id, 1, reason="queued again: dsup stopped meanwhile")
            assert store.get(task.id).state is TaskState.QUEUED
        again = store.claim("p", owner="n", lease_until=10.0, now=3.0)  # writes the release first
        assert again is not None
        with ledger_read_only(ledger):
            ledger.record_audit(actor="a", source="local", command="c", target="", outcome="")
            assert ledger.unrecorded
            assert store.get(task.id).state is TaskState.RUNNING
            assert [t.state for t in store.recent(1)] == [TaskState.RUNNING]
