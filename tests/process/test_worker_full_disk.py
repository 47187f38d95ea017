"""Workers reporting and asking while the ledger's disk is full: nothing fails, nothing is lost.

Real workers use worker_sdk against a real node; the ledger is a real sqlite file that
refuses every write (``tests/_ledger_full.py``) until space returns.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from supervisor.commands.access import Actor
from supervisor.events import Event, QuestionAsked, ResultReported
from tests._control import program, running_node, states, write_config
from tests._ledger_full import ledger_full
from tests._wait import wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from tests._control import Node

pytestmark = pytest.mark.timeout(60)

LOCAL = Actor.local()


class Recorder:
    """An event sink that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def deliver(self, event: Event) -> None:
        self.events.append(event)


def _output(node: Node) -> str:
    path = node.state.log_dir / "w-0.out.log"
    return path.read_text() if path.exists() else ""


async def test_worker_result_on_a_full_disk_is_announced_and_stored_when_space_returns(
    tmp_path: Path,
) -> None:
    """A full disk made the result's write raise: the worker channel ended, the result was lost."""
    sink = Recorder()
    config = write_config(tmp_path, program("w", "sdk_worker.py", "report", autostart=False))
    async with running_node(config, sinks=[sink]) as node:
        with ledger_full(node.ledger):
            await node.service.start(LOCAL, "w")
            await wait_until(lambda: "done" in _output(node))
            await wait_until(lambda: any(isinstance(e, ResultReported) for e in sink.events))
            assert states(node) == {"w:0": "RUNNING"}
            assert node.ledger.unrecorded
        assert node.ledger.retry_deferred()
        (stored,) = (await node.service.results(LOCAL, "w")).results
        (announced,) = [e.result for e in sink.events if isinstance(e, ResultReported)]
        assert stored == announced
        assert (stored.text, json.loads(stored.data or "")) == ("did 3 rows", {"rows": 3})
        assert states(node) == {"w:0": "RUNNING"}


async def test_worker_question_on_a_full_disk_is_asked_answered_and_stored_later(
    tmp_path: Path,
) -> None:
    """A full disk made the question's write raise: the worker never got its question asked."""
    sink = Recorder()
    asker = program("w", "sdk_worker.py", "ask", "Go?", "yes,no", "-", "-", autostart=False)
    config = write_config(tmp_path, asker)
    async with running_node(config, sinks=[sink]) as node:
        with ledger_full(node.ledger):
            await node.service.start(LOCAL, "w")
            await wait_until(lambda: any(isinstance(e, QuestionAsked) for e in sink.events))
            (asked,) = [e.question for e in sink.events if isinstance(e, QuestionAsked)]
            report = await node.service.answer(LOCAL, asked.id, "yes")
            assert report.answer == "yes"
            await wait_until(lambda: "answer yes" in _output(node))
            assert states(node) == {"w:0": "RUNNING"}
        assert node.ledger.retry_deferred()
        (row,) = node.ledger.read(
            "SELECT text, status, answer FROM worker_questions WHERE id = ?", (asked.id,)
        )
        assert tuple(row) == ("Go?", "answered", "yes")
