"""Tests of a slot's mailbox alone: commands one at a time, in order, each answered once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest

from supervisor.errors import InvalidTransition
from supervisor.events import ProcessState
from supervisor.process.mailbox import Kind, Mailbox, QueuedCommand
from supervisor.process.status import ProcessStatus

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from anyio.abc import TaskGroup


def _status(state: ProcessState = ProcessState.RUNNING) -> ProcessStatus:
    return ProcessStatus(
        process="w:0",
        program="w",
        index=0,
        state=state,
        pid=None,
        run_id=None,
        started_at=None,
        state_since=0.0,
        restarts=0,
        last_exit_code=None,
        last_exit_signal=None,
        last_error="",
    )


class Served:
    """A mailbox served by ``execute`` in a task group, and the answers its callers got."""

    def __init__(self, tg: TaskGroup, box: Mailbox) -> None:
        self.tg, self.box = tg, box
        self.answers: dict[str, ProcessStatus | InvalidTransition] = {}

    def submit(self, kind: Kind, reason: str) -> None:
        """Submit in a task of its own; its answer lands in ``answers[reason]``."""

        async def call() -> None:
            try:
                self.answers[reason] = await self.box.submit(kind, reason)
            except InvalidTransition as exc:
                self.answers[reason] = exc

        self.tg.start_soon(call)

    async def answered(self, *reasons: str) -> None:
        """Let every task run as far as it can; then each of ``reasons`` has its answer."""
        with anyio.fail_after(5):
            await anyio.wait_all_tasks_blocked()
        assert sorted(self.answers) == sorted(reasons)


@pytest.fixture
async def served() -> AsyncIterator[Callable[[Callable[[QueuedCommand], Awaitable[None]]], Served]]:
    """Serve a fresh mailbox with the given ``execute`` until the test ends."""
    async with anyio.create_task_group() as tg:

        def serve(execute: Callable[[QueuedCommand], Awaitable[None]]) -> Served:
            box = Mailbox("w:0")
            tg.start_soon(box.serve, execute)
            return Served(tg, box)

        yield serve
        tg.cancel_scope.cancel()


async def test_mailbox_runs_commands_one_at_a_time_in_order(
    served: Callable[[Callable[[QueuedCommand], Awaitable[None]]], Served],
) -> None:
    log: list[str] = []

    async def execute(cmd: QueuedCommand) -> None:
        log.append(f"begin {cmd.reason}")
        for _ in range(3):  # let the other callers run: they must not get in between
            await anyio.lowlevel.checkpoint()
        log.append(f"end {cmd.reason}")
        cmd.finish(_status())

    box = served(execute)
    for reason in ("a", "b", "c"):
        box.submit("restart", reason)
    await box.answered("a", "b", "c")
    assert log == ["begin a", "end a", "begin b", "end b", "begin c", "end c"]
    assert all(isinstance(box.answers[r], ProcessStatus) for r in "abc")


async def test_mailbox_refusal_answers_that_caller_and_serves_the_next(
    served: Callable[[Callable[[QueuedCommand], Awaitable[None]]], Served],
) -> None:
    async def execute(cmd: QueuedCommand) -> None:
        if cmd.kind == "start":
            raise InvalidTransition("w:0", "RUNNING", "start")
        cmd.finish(_status(ProcessState.STOPPED))

    box = served(execute)
    box.submit("start", "first")
    box.submit("stop", "second")
    await box.answered("first", "second")
    refused, stopped = box.answers["first"], box.answers["second"]
    assert isinstance(refused, InvalidTransition)
    assert (refused.process, refused.wanted) == ("w:0", "start")
    assert isinstance(stopped, ProcessStatus)
    assert stopped.state is ProcessState.STOPPED


async def test_mailbox_settle_answers_what_waited_for_the_slot_to_settle(
    served: Callable[[Callable[[QueuedCommand], Awaitable[None]]], Served],
) -> None:
    calls: list[int] = []
    taken: list[QueuedCommand] = []

    def status() -> ProcessStatus:
        calls.append(1)
        return _status(ProcessState.RUNNING)

    async def execute(cmd: QueuedCommand) -> None:
        taken.append(cmd)
        box.box.settle_later(cmd)  # a start is answered once the slot is up

    box = served(execute)
    box.box.settle(status)  # nothing waits: status is not even asked
    assert calls == []
    box.submit("start", "one")
    box.submit("restart", "two")
    await anyio.wait_all_tasks_blocked()
    assert [cmd.reason for cmd in taken] == ["one", "two"]  # both wait to be settled
    box.box.settle(status)
    await box.answered("one", "two")
    assert calls == [1]  # one snapshot answers every waiting command
    assert box.answers["one"] is box.answers["two"]


async def test_mailbox_a_cancelled_caller_does_not_cancel_its_command(
    served: Callable[[Callable[[QueuedCommand], Awaitable[None]]], Served],
) -> None:
    release = anyio.Event()
    done: list[str] = []

    async def execute(cmd: QueuedCommand) -> None:
        await release.wait()
        done.append(cmd.reason)
        cmd.finish(_status())

    box = served(execute)
    async with anyio.create_task_group() as callers:
        callers.start_soon(box.box.submit, "stop", "impatient")
        await anyio.wait_all_tasks_blocked()  # taken, and waiting for release
        callers.cancel_scope.cancel()
    release.set()
    box.submit("stop", "after")
    await box.answered("after")
    assert done == ["impatient", "after"]


async def test_mailbox_fail_pending_answers_every_command_left() -> None:
    box = Mailbox("w:0")
    answers: dict[str, ProcessStatus | InvalidTransition] = {}

    async def call(kind: Kind, reason: str) -> None:
        try:
            answers[reason] = await box.submit(kind, reason)
        except InvalidTransition as exc:
            answers[reason] = exc

    async with anyio.create_task_group() as tg:
        for kind in ("stop", "start", "restart"):
            tg.start_soon(call, kind, kind)
        await anyio.wait_all_tasks_blocked()
        box.fail_pending(_status(ProcessState.STOPPED))
    assert isinstance(answers["stop"], ProcessStatus)  # a stop is already done
    for kind in ("start", "restart"):
        refused = answers[kind]
        assert isinstance(refused, InvalidTransition)
        assert (refused.current, refused.wanted) == ("STOPPED", kind)


def test_mailbox_command_keeps_its_first_answer() -> None:
    cmd = QueuedCommand(kind="stop", reason="x")
    first = _status(ProcessState.STOPPED)
    cmd.finish(first)
    cmd.finish(None, InvalidTransition("w:0", "STOPPED", "stop"))
    assert (cmd.result, cmd.error, cmd.done.is_set()) == (first, None, True)
