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
    from collections.abc import AsyncIterator, Callable

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


class Callers:
    """Callers submitting to one mailbox, each in a task, and the answers they got."""

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
async def callers() -> AsyncIterator[Callable[[Mailbox], Callers]]:
    """Callers of a mailbox, in a task group cancelled when the test ends."""
    async with anyio.create_task_group() as tg:
        yield lambda box: Callers(tg, box)
        tg.cancel_scope.cancel()


async def test_mailbox_gives_commands_one_at_a_time_in_order(
    callers: Callable[[Mailbox], Callers],
) -> None:
    box = callers(Mailbox("w:0"))
    for reason in ("a", "b", "c"):
        box.submit("restart", reason)
    await anyio.wait_all_tasks_blocked()
    assert box.box.first() is not None
    taken = []
    for _ in range(3):
        cmd = await box.box.take()
        taken.append(cmd.reason)
        cmd.finish(_status())
    await box.answered("a", "b", "c")
    assert taken == ["a", "b", "c"]
    assert box.box.first() is None
    assert all(isinstance(box.answers[r], ProcessStatus) for r in "abc")


async def test_mailbox_take_waits_for_a_command(callers: Callable[[Mailbox], Callers]) -> None:
    box = callers(Mailbox("w:0"))
    taken: list[QueuedCommand] = []

    async def taker() -> None:
        taken.append(await box.box.take())

    box.tg.start_soon(taker)
    await anyio.wait_all_tasks_blocked()
    assert taken == []
    box.submit("stop", "now")
    await anyio.wait_all_tasks_blocked()
    assert [cmd.reason for cmd in taken] == ["now"]


async def test_mailbox_refusal_at_queueing_answers_that_caller_and_keeps_the_next(
    callers: Callable[[Mailbox], Callers],
) -> None:
    def refuse_starts() -> None:
        cmd = box.box.first()
        if cmd is not None and cmd.kind == "start":
            box.box.refuse_first(InvalidTransition("w:0", "RUNNING", "start"))

    box = callers(Mailbox("w:0", on_queued=refuse_starts))
    box.submit("start", "first")
    await box.answered("first")  # no taker needed
    box.submit("stop", "second")
    cmd = await box.box.take()
    cmd.finish(_status(ProcessState.STOPPED))
    await box.answered("first", "second")
    refused, stopped = box.answers["first"], box.answers["second"]
    assert isinstance(refused, InvalidTransition)
    assert (refused.process, refused.wanted) == ("w:0", "start")
    assert isinstance(stopped, ProcessStatus)
    assert stopped.state is ProcessState.STOPPED


async def test_mailbox_settle_answers_what_waited_for_the_slot_to_settle(
    callers: Callable[[Mailbox], Callers],
) -> None:
    calls: list[int] = []

    def status() -> ProcessStatus:
        calls.append(1)
        return _status(ProcessState.RUNNING)

    box = callers(Mailbox("w:0"))
    box.box.settle(status)  # nothing waits: status is not even asked
    assert calls == []
    box.submit("start", "one")
    box.submit("restart", "two")
    await anyio.wait_all_tasks_blocked()
    for _ in range(2):
        box.box.settle_later(await box.box.take())  # a start is answered once the slot is up
    await anyio.wait_all_tasks_blocked()
    assert box.answers == {}  # both wait to be settled
    box.box.settle(status)
    await box.answered("one", "two")
    assert calls == [1]  # one snapshot answers every waiting command
    assert box.answers["one"] is box.answers["two"]


async def test_mailbox_a_cancelled_caller_does_not_cancel_its_command(
    callers: Callable[[Mailbox], Callers],
) -> None:
    box = callers(Mailbox("w:0"))
    async with anyio.create_task_group() as impatient:
        impatient.start_soon(box.box.submit, "stop", "impatient")
        await anyio.wait_all_tasks_blocked()
        impatient.cancel_scope.cancel()
    box.submit("stop", "after")
    await anyio.wait_all_tasks_blocked()
    taken = [await box.box.take(), await box.box.take()]
    for cmd in taken:
        cmd.finish(_status())
    await box.answered("after")
    assert [cmd.reason for cmd in taken] == ["impatient", "after"]


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
