"""Stream programs: long-running workers take tasks from worker_sdk.tasks()."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.commands.access import AccessLevel, Actor
from supervisor.tasks.records import TaskState
from supervisor.tasks.store import SqliteTaskStore
from tests._control import program, running_node, write_config
from tests._wait import wait_until
from tests.tasks._tasks import task_program

if TYPE_CHECKING:
    from collections.abc import Collection

    from supervisor.process.fleet import Fleet
    from supervisor.process.worker_link import TaskBroker, WorkerLink
    from supervisor.state.ledger import Ledger
    from supervisor.tasks.records import TaskRecord

LOCAL = Actor(name="alice", source="local", level=AccessLevel.OPERATOR)
WORKER = Path(__file__).parent.parent / "workers" / "task_stream.py"


def stream_program(name: str, *args: str, **keys: object) -> str:
    settings: dict[str, object] = {
        "command": [sys.executable, "-u", str(WORKER), *args],
        "tasks": "stream",
        "start_seconds": 0.2,
        "stop_timeout_seconds": 2.0,
        **keys,
    }
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    return f"[programs.{name}]\n{body}\n"


async def test_stream_worker_answers_fails_and_times_out(tmp_path: Path) -> None:
    config = write_config(tmp_path, stream_program("upper", task_timeout_seconds=1.0))
    async with running_node(config) as node:
        done = await node.service.task(LOCAL, "upper", "hello there", wait_seconds=20)
        failed = await node.service.task(LOCAL, "upper", "fail", wait_seconds=20)
        hung = await node.service.task(LOCAL, "upper", "hang", wait_seconds=20)
        after = await node.service.task(LOCAL, "upper", "still here", wait_seconds=20)
        (slot,) = node.fleet.resolve("upper")
        pid = slot.status().pid
    assert (done.state, done.result) == (TaskState.DONE, "upper: HELLO THERE")
    assert (failed.state, failed.reason) == (TaskState.FAILED, "asked to fail")
    assert hung.state is TaskState.TIMED_OUT
    assert "timed out after 1 s" in hung.reason
    assert (after.state, after.result) == (TaskState.DONE, "upper: STILL HERE")
    assert pid is not None  # one long-running process served them all


async def test_stream_worker_gets_the_paths_of_a_tasks_files(tmp_path: Path) -> None:
    config = write_config(tmp_path, stream_program("upper"))
    async with running_node(config) as node:
        folder = node.tasks.files_dir("message:12")
        folder.mkdir(parents=True)
        (folder / "b.txt").write_text("two")
        (folder / "a.txt").write_text("one")
        task = await node.service.task(
            LOCAL, "upper", "files", source_key="message:12", wait_seconds=20
        )
        await wait_until(lambda: not folder.exists())  # gone once the task ended
    assert (task.state, task.result) == (TaskState.DONE, "a.txt=one b.txt=two")


async def test_stream_keeps_at_most_concurrency_tasks_in_flight(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.mkdir()
    config = write_config(tmp_path, stream_program("upper", str(hold), concurrency=2))
    async with running_node(config) as node:
        ids = [(await node.service.task(LOCAL, "upper", f"t{i}")).id for i in range(5)]
        held = hold / "held"
        await wait_until(lambda: held.exists() and held.read_text() == "2")
        states = sorted(t.state.value for t in (await node.service.tasks(LOCAL)).tasks)
        assert states == ["queued"] * 3 + ["running"] * 2
        (hold / "go").touch()
        ended = [await node.tasks.wait(i, 20) for i in ids]
    assert [t.result for t in ended] == [f"upper: T{i}" for i in range(5)]
    assert held.read_text() == "2"  # never more than concurrency


async def test_stream_tasks_of_a_worker_that_dies_fail_and_the_next_one_takes_over(
    tmp_path: Path,
) -> None:
    hold = tmp_path / "hold"
    hold.mkdir()
    config = write_config(
        tmp_path, stream_program("upper", str(hold), restart="always", backoff_seconds=0.1)
    )
    async with running_node(config) as node:
        first = await node.service.task(LOCAL, "upper", "lost")
        held = hold / "held"
        await wait_until(held.exists)
        await node.service.restart(LOCAL, "upper")
        lost = await node.tasks.wait(first.id, 20)
        (hold / "go").touch()
        later = await node.service.task(LOCAL, "upper", "next", wait_seconds=20)
    assert lost.state is TaskState.FAILED
    assert "ended before answering it" in lost.reason
    assert (later.state, later.result) == (TaskState.DONE, "upper: NEXT")


async def test_a_planner_hands_sub_tasks_on_with_submit_and_waits_for_them(
    tmp_path: Path,
) -> None:
    planner = Path(__file__).parent.parent / "workers" / "task_planner.py"
    plan = (
        f"[programs.planner]\ncommand = {json.dumps([sys.executable, str(planner), 'upper'])}\n"
        'tasks = "oneshot"\n'
    )
    config = write_config(tmp_path, plan, stream_program("upper", concurrency=4))
    async with running_node(config) as node:
        task = await node.service.task(LOCAL, "planner", "one two three", wait_seconds=30)
        listed = (await node.service.tasks(LOCAL)).tasks
    assert (task.state, task.result) == (TaskState.DONE, "upper: ONE | upper: TWO | upper: THREE")
    steps = [t for t in listed if t.program == "upper"]
    assert sorted(t.text for t in steps) == ["one", "three", "two"]
    assert {(t.source, t.author, t.state) for t in steps} == {
        ("worker", f"planner:task{task.id}", TaskState.DONE)
    }


async def test_stream_worker_added_after_the_queue_was_made_takes_tasks(tmp_path: Path) -> None:
    """The queue made by a reload (a oneshot program added), a later reload adds a
    stream program: its worker reaches the queue through the fleet's one task broker,
    the node's lazy queue, as the workers started before the queue was made do."""
    admin = Actor(name="root", source="local", level=AccessLevel.ADMIN)
    plain = program("plain", "ctl_ticker.py", "0.2")
    config = write_config(tmp_path, plain)
    async with running_node(config) as node:
        write_config(tmp_path, plain, task_program("echo", "echo", "{task}"))
        await node.service.reload(admin)
        assert node.lazy_tasks.made is not None
        write_config(
            tmp_path, plain, task_program("echo", "echo", "{task}"), stream_program("upper")
        )
        await node.service.reload(admin)
        done = await node.service.task(LOCAL, "upper", "made before me", wait_seconds=20)
    assert (done.state, done.result) == (TaskState.DONE, "upper: MADE BEFORE ME")


class _SlowRecovery(SqliteTaskStore):
    """A task store whose first recovery outlasts a quick worker's start (a big ledger,
    a loaded disk): once the fleet runs ``program``, it ends only when a worker has
    asked for tasks (bounded).

    It is also the fleet's task broker in front of the node's, which notes the asks.
    """

    program = "upper"

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(ledger)
        self.fleet: Fleet | None = None
        self.broker: TaskBroker | None = None
        self.asked = threading.Event()
        self.refused: list[str] = []
        self._recovered = False

    def requeue_expired(self, *, now: float, dead_owners: Collection[str] = ()) -> list[TaskRecord]:
        if not self._recovered and self.fleet is not None:
            self._recovered = True
            if self.program in self.fleet.config.programs:
                self.asked.wait(timeout=20)
        return super().requeue_expired(now=now, dead_owners=dead_owners)

    def take(self, link: WorkerLink) -> bool:
        assert self.broker is not None
        taken = self.broker.take(link)
        if not taken:
            self.refused.append(link.process)
        self.asked.set()
        return taken

    async def answered(self, link: WorkerLink, task_id: int, *, ok: bool, text: str) -> None:
        assert self.broker is not None
        await self.broker.answered(link, task_id, ok=ok, text=text)

    async def left(self, link: WorkerLink) -> None:
        assert self.broker is not None
        await self.broker.left(link)

    async def submit_from(self, link: WorkerLink, program: str, text: str) -> int:
        assert self.broker is not None
        return await self.broker.submit_from(link, program, text)

    def wait_for(self, link: WorkerLink, request: object, task_id: int, timeout: float) -> None:
        assert self.broker is not None
        self.broker.wait_for(link, request, task_id, timeout)


async def test_a_reload_adding_the_first_stream_program_makes_the_queue_before_launching(
    tmp_path: Path,
) -> None:
    """A reload adding the first program that takes tasks: its worker asks for tasks as
    soon as it runs. The queue was made (and recovered) only after the reload had
    launched the worker, so a worker quicker than that recovery was told its program
    takes no tasks here, and never got one."""
    admin = Actor(name="root", source="local", level=AccessLevel.ADMIN)
    plain = program("plain", "ctl_ticker.py", "0.2")
    config = write_config(tmp_path, plain)
    stores: list[_SlowRecovery] = []

    def store(ledger: Ledger) -> _SlowRecovery:
        stores.append(_SlowRecovery(ledger))
        return stores[-1]

    async with running_node(config, store=store) as node:
        (slow,) = stores
        assert node.lazy_tasks.made is None
        slow.fleet, slow.broker = node.fleet, node.fleet.tasks
        node.fleet.tasks = slow
        write_config(tmp_path, plain, stream_program("upper"))
        await node.service.reload(admin)
        assert slow.refused == []
        done = await node.service.task(LOCAL, "upper", "first of all", wait_seconds=20)
    assert slow.refused == []
    assert (done.state, done.result) == (TaskState.DONE, "upper: FIRST OF ALL")
