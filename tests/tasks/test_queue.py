"""The task queue in a real node: oneshot processes, results, failures, limits, cancel."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import anyio
import pytest

from supervisor.commands.access import AccessLevel, Actor
from supervisor.config.schema import ProgramSpec, TaskMode
from supervisor.errors import (
    AccessDenied,
    InvalidArgument,
    NotATaskProgram,
    TaskBacklogFull,
    TaskFinished,
    Unavailable,
    UnknownTask,
)
from supervisor.reaper.reaper import Reaper
from supervisor.state.ledger import Ledger
from supervisor.tasks import queue as queue_module
from supervisor.tasks.queue import TaskContext, TaskQueue
from supervisor.tasks.records import NewTask, TaskState
from supervisor.tasks.store import SqliteTaskStore
from tests._control import Node, program, running_node, write_config
from tests._e2e import alive
from tests._ledger_full import ledger_full
from tests._wait import wait_until
from tests.tasks._tasks import held, task_program

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

LOCAL = Actor(name="alice", source="local", level=AccessLevel.OPERATOR)


async def test_oneshot_task_gets_text_on_stdin_and_as_one_untouched_argument(
    tmp_path: Path,
) -> None:
    text = "a; rm -rf / && echo $(id) `x` | cat > f * ? 'q' \"d\"\nsecond line"
    config = write_config(tmp_path, task_program("echo", "echo", "--", "{task}", "after"))
    async with running_node(config) as node:
        task = await node.service.task(LOCAL, "echo", text, wait_seconds=20)
    assert task.state is TaskState.DONE, task
    out = json.loads(task.result)
    assert out["argv"] == ["--", text, "after"]
    assert out["stdin"] == text
    assert out["in_task_dir"] is True
    assert out["task_id"] == str(task.id)
    assert task.author == "alice"
    assert task.attempts == 1


async def test_failed_task_says_why_with_the_last_lines_of_stderr(tmp_path: Path) -> None:
    config = write_config(tmp_path, task_program("bad", "fail"))
    async with running_node(config) as node:
        task = await node.service.task(LOCAL, "bad", "anything", wait_seconds=20)
    assert task.state is TaskState.FAILED
    assert task.exit_code == 3
    assert task.reason.startswith("exit code 3")
    assert "problem 4" in task.reason
    assert task.result == ""


async def test_concurrency_bounds_processes_at_once(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.mkdir()
    config = write_config(tmp_path, task_program("held", "hold", str(hold), concurrency=2))
    async with running_node(config) as node:
        ids = [(await node.service.task(LOCAL, "held", f"t{i}")).id for i in range(5)]
        await wait_until(lambda: len(held(hold)) == 2)
        states = {t.id: t.state for t in (await node.service.tasks(LOCAL)).tasks}
        assert sorted(states.values(), key=lambda s: s.value) == [
            *[TaskState.QUEUED] * 3,
            *[TaskState.RUNNING] * 2,
        ]
        assert set(held(hold)) == set(ids[:2])  # oldest first
        (hold / "go").touch()
        done = [await node.tasks.wait(i, 20) for i in ids]
    assert [t.state for t in done] == [TaskState.DONE] * 5
    assert [t.result for t in done] == [f"held {i}\n" for i in ids]


async def test_timeout_stops_the_whole_tree(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.mkdir()
    config = write_config(
        tmp_path, task_program("slow", "hold", str(hold), task_timeout_seconds=1.5)
    )
    async with running_node(config) as node:
        task = await node.service.task(LOCAL, "slow", "x")
        await wait_until(lambda: task.id in held(hold))
        tree = held(hold)[task.id]
        task = await node.tasks.wait(task.id, 20)
    assert task.state is TaskState.TIMED_OUT
    assert "timed out after 1.5 s" in task.reason
    assert len(tree) == 2
    assert not any(alive(p) for p in tree)


async def test_cancel_stops_a_running_tree_and_drops_a_queued_task(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.mkdir()
    config = write_config(tmp_path, task_program("held", "hold", str(hold)))
    async with running_node(config) as node:
        first = await node.service.task(LOCAL, "held", "one")
        second = await node.service.task(LOCAL, "held", "two")
        await wait_until(lambda: first.id in held(hold))
        tree = held(hold)[first.id]
        queued = await node.service.task_cancel(LOCAL, second.id)
        running = await node.service.task_cancel(LOCAL, first.id)
        with pytest.raises(TaskFinished):
            await node.service.task_cancel(LOCAL, first.id)
        audit = [(r.command, r.target, r.outcome) for r in node.ledger.audit_rows()]
    assert queued.state is TaskState.CANCELLED
    assert queued.attempts == 0
    assert running.state is TaskState.CANCELLED
    assert running.reason == "cancelled by alice"
    assert not any(alive(p) for p in tree)
    assert second.id not in held(hold)  # never started
    assert ("task-cancel", str(first.id), "ok") in audit
    assert ("task-cancel", str(first.id), "refused") in audit


async def test_only_operators_post_tasks_and_refusals_are_audited(tmp_path: Path) -> None:
    config = write_config(tmp_path, task_program("echo", "echo"))
    viewer = Actor(name="bob", source="discord", level=AccessLevel.VIEWER)
    async with running_node(config) as node:
        with pytest.raises(AccessDenied):
            await node.service.task(viewer, "echo", "hello")
        with pytest.raises(AccessDenied):
            await node.service.task_cancel(viewer, 1)
        listed = await node.service.tasks(viewer)
        audit = [(r.actor, r.command, r.outcome) for r in node.ledger.audit_rows()]
    assert listed.tasks == ()
    assert ("bob", "task", "refused") in audit
    assert ("bob", "task-cancel", "refused") in audit


async def test_backlog_past_its_maximum_refuses_new_tasks(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.mkdir()
    config = write_config(tmp_path, task_program("held", "hold", str(hold), task_backlog=2))
    async with running_node(config) as node:
        first = await node.service.task(LOCAL, "held", "running")
        await wait_until(lambda: first.id in held(hold))
        await node.service.task(LOCAL, "held", "queued 1")
        await node.service.task(LOCAL, "held", "queued 2")
        with pytest.raises(TaskBacklogFull, match="already has 2 tasks waiting"):
            await node.service.task(LOCAL, "held", "one too many")
        (hold / "go").touch()
        listed = (await node.service.tasks(LOCAL)).tasks
    assert len(listed) == 3


async def test_bad_tasks_are_refused_before_anything_is_recorded(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        task_program("echo", "echo"),
        "[programs.plain]\ncommand = ['sleep', '60']\nautostart = false\n",
    )
    async with running_node(config) as node:
        with pytest.raises(NotATaskProgram, match="programs that do: echo"):
            await node.service.task(LOCAL, "plain", "hello")
        with pytest.raises(InvalidArgument):
            await node.service.task(LOCAL, "echo", "   ")
        with pytest.raises(InvalidArgument):
            await node.service.task(LOCAL, "echo", "x" * 40_000)
        with pytest.raises(InvalidArgument):
            await node.service.task(LOCAL, "echo", "nul\0byte")
        listed = (await node.service.tasks(LOCAL)).tasks
    assert listed == ()


async def test_task_logs_are_kept_for_the_latest_tasks_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_module, "LOGS_KEEP", 2)
    config = write_config(tmp_path, task_program("echo", "echo"))
    async with running_node(config) as node:
        ids = [
            (await node.service.task(LOCAL, "echo", f"t{i}", wait_seconds=20)).id for i in range(4)
        ]
        logs = sorted(p.name for p in (node.state.log_dir / "tasks").iterdir())
    assert logs == sorted(f"echo-task{i}.{kind}.log" for i in ids[2:] for kind in ("out", "err"))


async def test_shutdown_gives_running_tasks_back_without_counting_the_attempt(
    tmp_path: Path,
) -> None:
    hold = tmp_path / "hold"
    hold.mkdir()
    config = write_config(tmp_path, task_program("held", "hold", str(hold)))
    async with running_node(config) as node:
        task = await node.service.task(LOCAL, "held", "x")
        await wait_until(lambda: task.id in held(hold))
        tree = held(hold)[task.id]
        ledger_path = node.state.ledger_path
    assert not any(alive(p) for p in tree)
    with Ledger.open(ledger_path) as ledger:
        between = SqliteTaskStore(ledger).get(task.id)
    assert (between.state, between.attempts) == (TaskState.QUEUED, 0)
    assert between.reason == "queued again: dsup stopped meanwhile"
    (hold / f"{task.id}.pids").unlink()
    async with running_node(config) as node:
        await wait_until(lambda: task.id in held(hold))
        (hold / "go").touch()
        done = await node.tasks.wait(task.id, 20)
    assert (done.state, done.attempts) == (TaskState.DONE, 1)


async def test_oneshot_answer_is_the_worker_sdk_result_when_it_sends_one(tmp_path: Path) -> None:
    config = write_config(tmp_path, task_program("sdk", "sdk"))
    async with running_node(config) as node:
        task = await node.service.task(LOCAL, "sdk", "two words", wait_seconds=20)
    assert task.state is TaskState.DONE, task
    assert task.result == 'summary: two words\n{\n  "words": 2\n}'


async def test_task_on_a_full_disk_is_refused_saying_why(tmp_path: Path) -> None:
    """A full disk made submitting raise sqlite's error: a chat task was lost unanswered."""
    config = write_config(tmp_path, task_program("echo", "echo"))
    async with running_node(config) as node:
        with ledger_full(node.ledger), pytest.raises(Unavailable, match="disk is full"):
            await node.service.task(LOCAL, "echo", "hello")
        listed = (await node.service.tasks(LOCAL)).tasks
        assert [t for t in listed if t.program == "echo"] == []
        task = await node.service.task(LOCAL, "echo", "hello")
        await wait_until(
            lambda: (
                node.ledger.read("SELECT state FROM tasks WHERE id = ?", (task.id,))[0][0] == "done"
            )
        )


class _CountingStore(SqliteTaskStore):
    """The ledger's task store, counting how often the queue looks at its counts."""

    looks = 0

    def counts(self) -> Mapping[str, Mapping[TaskState, int]]:
        self.looks += 1
        return super().counts()


async def test_queue_without_task_programs_leaves_the_store_alone_until_woken(
    tmp_path: Path,
) -> None:
    """An idle node without task programs queried the store from a thread every second,
    and then woke every second to see whether a program took tasks yet: now a reload
    says so (``reconfigured``), whatever the poll."""
    programs: dict[str, ProgramSpec] = {}
    asked: list[None] = []

    def current() -> Mapping[str, ProgramSpec]:
        asked.append(None)
        return programs

    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        store = _CountingStore(ledger)
        ctx = TaskContext(
            node="n",
            instance_id="i",
            log_dir=tmp_path / "logs",
            work_dir=tmp_path / "work",
            ledger=ledger,
            reaper=Reaper(instance_id="i", ledger=ledger),
        )
        queue = TaskQueue(store, ctx, current, poll_seconds=0.01)
        async with anyio.create_task_group() as tg:
            await tg.start(queue.run)
            await wait_until(lambda: store.looks == 1)  # the first look, at start
            programs["t"] = ProgramSpec(
                name="t", command=("true",), cwd=tmp_path, tasks=TaskMode.ONESHOT
            )
            queue.reconfigured()
            await wait_until(lambda: store.looks >= 3)  # polled again once one takes tasks
            tg.cancel_scope.cancel()


async def test_queue_is_made_when_first_needed_and_answers_as_before(tmp_path: Path) -> None:
    """A node whose programs took no tasks kept the queue's code and task loaded: memory.

    Until a task command or a reload adding a task program makes it, nothing changes
    for a user: no tasks listed, an unknown task, a program that takes no tasks.
    """
    plain = program("plain", "ctl_ticker.py", "0.2")
    config = write_config(tmp_path, plain)
    async with running_node(config) as node:
        assert (await node.service.tasks(LOCAL)).tasks == ()
        assert node.service.task_counts() == {}
        assert not _queue_made(node)
        with pytest.raises(UnknownTask, match="7"):
            await node.service.task_cancel(LOCAL, 7)
        with pytest.raises(NotATaskProgram, match="plain"):
            await node.service.task(LOCAL, "plain", "x")

    (tmp_path / "again").mkdir()
    config = write_config(tmp_path / "again", plain)
    async with running_node(config) as node:
        assert not _queue_made(node)
        write_config(tmp_path / "again", plain, task_program("echo", "echo", "{task}"))
        await node.service.reload(Actor(name="root", source="local", level=AccessLevel.ADMIN))
        assert _queue_made(node)
        task = await node.service.task(LOCAL, "echo", "hello", wait_seconds=20)
    assert task.state is TaskState.DONE, task


async def test_a_queue_made_by_a_reload_takes_the_node_name_of_the_reload(
    tmp_path: Path,
) -> None:
    """A reload renaming the node and adding its first task program made the queue with
    the name from before the reload: its attempts' ``DSUP_NODE`` (and its claims) named a
    node that no longer ran."""
    plain = program("plain", "ctl_ticker.py", "0.2")
    config = write_config(tmp_path, plain)
    async with running_node(config) as node:
        assert not _queue_made(node)
        whoami = '[programs.whoami]\ncommand = ["printenv", "DSUP_NODE"]\ntasks = "oneshot"\n'
        write_config(tmp_path, plain, whoami)
        config.write_text(config.read_text().replace('name = "ctltest"', 'name = "renamed"'))
        await node.service.reload(Actor(name="root", source="local", level=AccessLevel.ADMIN))
        task = await node.service.task(LOCAL, "whoami", "x", wait_seconds=20)
    assert task.state is TaskState.DONE, task
    assert task.result == "renamed\n"


async def test_a_reload_giving_tasks_to_a_program_starts_its_queued_task_at_once(
    tmp_path: Path,
) -> None:
    """A queue with no program taking tasks sleeps until woken, not for one poll: the
    reload that gives a program tasks wakes it (the poll is an hour here), and the task
    another node sharing the ledger queued for it meanwhile runs."""
    plain = program("plain", "ctl_ticker.py", "0.2")
    echo = task_program("echo", "echo", "{task}")
    config = write_config(tmp_path, plain, echo)
    admin = Actor(name="root", source="local", level=AccessLevel.ADMIN)
    async with running_node(config, task_poll_seconds=3600.0) as node:
        write_config(tmp_path, plain)
        await node.service.reload(admin)  # no program takes tasks now
        other_node = SqliteTaskStore(node.ledger)
        task, _ = other_node.submit(
            NewTask(program="echo", text="hello", source="local", author="bob"),
            backlog=10,
            now=time.time(),
        )
        write_config(tmp_path, plain, echo)
        await node.service.reload(admin)
        await wait_until(lambda: other_node.get(task.id).state is TaskState.DONE)


def _queue_made(node: Node) -> bool:
    return node.lazy_tasks.made is not None
