"""The worker channel end to end: real workers using worker_sdk, a real node and ledger."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import anyio
import pytest

from supervisor.commands.access import AccessLevel, Actor
from supervisor.errors import AccessDenied, InvalidArgument, UnknownQuestion
from supervisor.events import (
    Event,
    ProgressReported,
    QuestionAsked,
    QuestionClosed,
    ResultReported,
    WorkerLogged,
)
from tests._control import program, running_node, write_config
from tests._wait import wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from tests._control import Node

pytestmark = pytest.mark.timeout(60)

ALICE = Actor(name="alice", source="discord", level=AccessLevel.OPERATOR)
VIEWER = Actor(name="vic", source="discord", level=AccessLevel.VIEWER)


class Recorder:
    """An event sink that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def deliver(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


def _output(node: Node, process: str = "w:0") -> str:
    path = node.state.log_dir / f"{process.replace(':', '-')}.out.log"
    return path.read_text() if path.exists() else ""


def _question_row(node: Node, question_id: int) -> dict[str, object]:
    rows = node.ledger.read("SELECT * FROM worker_questions WHERE id = ?", (question_id,))
    return dict(rows[0])


async def _asked(sink: Recorder) -> QuestionAsked:
    await wait_until(lambda: bool(sink.of(QuestionAsked)))
    event = sink.of(QuestionAsked)[0]
    assert isinstance(event, QuestionAsked)
    return event


def _raw(tmp_path: Path, data: bytes) -> str:
    """A worker that writes ``data`` on its channel, then a valid result."""
    (tmp_path / "raw").write_bytes(data)
    return program("w", "sdk_worker.py", "raw", str(tmp_path / "raw"))


def _ask(
    question: str, choices: str, timeout: str, default: str, mode: str = "ask", **keys: object
) -> str:
    return program("w", "sdk_worker.py", mode, question, choices, timeout, default, **keys)


async def test_worker_progress_log_and_result_reach_events_status_and_ledger(
    tmp_path: Path,
) -> None:
    sink = Recorder()
    config = write_config(tmp_path, program("w", "sdk_worker.py", "report"))
    async with running_node(config, sinks=[sink]) as node:
        await wait_until(lambda: "done" in _output(node))
        await wait_until(lambda: bool(sink.of(ResultReported)))
        (slot,) = node.fleet.processes()
        await wait_until(lambda: (p := slot.status().progress) is not None and p.fraction == 1.0)
        progress = slot.status().progress
        assert progress is not None
        assert (progress.done, progress.total, progress.text) == (10.0, 10.0, "step 10")
        # Eleven calls in a burst are coalesced, and the last one is announced.
        reported = [e.progress.fraction for e in sink.events if isinstance(e, ProgressReported)]
        assert 1 <= len(reported) < 11
        await wait_until(lambda: any(e.progress.fraction == 1.0 for e in _progress(sink)))
        (logged,) = sink.of(WorkerLogged)
        assert isinstance(logged, WorkerLogged)
        assert (logged.level, logged.text) == ("warning", "careful now")
        report = await node.service.results(VIEWER, "w")
        (stored,) = report.results
        assert stored.text == "did 3 rows"
        assert json.loads(stored.data or "") == {"rows": 3}
        assert stored.files == (str(node.config.programs["w"].cwd / "out.csv"),)


def _progress(sink: Recorder) -> list[ProgressReported]:
    return [e for e in sink.events if isinstance(e, ProgressReported)]


async def test_worker_question_is_answered_once_by_an_operator(tmp_path: Path) -> None:
    sink = Recorder()
    config = write_config(tmp_path, _ask("Delete 3,000 rows?", "yes,no", "-", "-"))
    async with running_node(config, sinks=[sink]) as node:
        asked = (await _asked(sink)).question
        assert (asked.text, asked.choices, asked.process) == (
            "Delete 3,000 rows?",
            ("yes", "no"),
            "w:0",
        )
        (slot,) = node.fleet.processes()
        assert slot.status().question == asked
        assert [q.id for q in (await node.service.asks(VIEWER)).questions] == [asked.id]
        with pytest.raises(AccessDenied):
            await node.service.answer(VIEWER, asked.id, "yes")
        with pytest.raises(InvalidArgument):
            await node.service.answer(ALICE, asked.id, "maybe")
        report = await node.service.answer(ALICE, asked.id, "YES")
        assert (report.answer, report.by) == ("yes", "alice")
        with pytest.raises(UnknownQuestion):
            await node.service.answer(ALICE, asked.id, "no")
        await wait_until(lambda: "answer yes" in _output(node))
        row = _question_row(node, asked.id)
        assert (row["status"], row["answer"], row["answered_by"], row["source"]) == (
            "answered",
            "yes",
            "alice",
            "discord",
        )
        (closed,) = sink.of(QuestionClosed)
        assert isinstance(closed, QuestionClosed)
        assert (closed.status, closed.answer, closed.by) == ("answered", "yes", "alice")
        assert slot.status().question is None
        assert not (await node.service.asks(VIEWER)).questions
        audit = [(r.actor, r.outcome) for r in node.ledger.audit_rows() if r.command == "answer"]
        assert audit == [
            ("alice", "failed"),
            ("alice", "ok"),
            ("alice", "refused"),
            ("vic", "refused"),
        ]


async def test_worker_free_text_question_takes_any_text(tmp_path: Path) -> None:
    sink = Recorder()
    config = write_config(tmp_path, _ask("Which table?", "-", "-", "-"))
    async with running_node(config, sinks=[sink]) as node:
        asked = (await _asked(sink)).question
        assert asked.choices is None
        with pytest.raises(InvalidArgument):
            await node.service.answer(ALICE, asked.id, "   ")
        await node.service.answer(ALICE, asked.id, "  stale rows  ")
        await wait_until(lambda: "answer stale rows" in _output(node))


async def test_worker_question_times_out_with_its_default(tmp_path: Path) -> None:
    sink = Recorder()
    config = write_config(tmp_path, _ask("Go?", "yes,no", "0.5", "no"))
    async with running_node(config, sinks=[sink]) as node:
        asked = (await _asked(sink)).question
        await wait_until(lambda: "answer no" in _output(node))
        await wait_until(lambda: bool(sink.of(QuestionClosed)))
        (closed,) = sink.of(QuestionClosed)
        assert isinstance(closed, QuestionClosed)
        assert (closed.status, closed.answer) == ("timeout", "no")
        assert _question_row(node, asked.id)["status"] == "timeout"
        with pytest.raises(UnknownQuestion):
            await node.service.answer(ALICE, asked.id, "yes")


async def test_worker_question_without_default_times_out_as_no_answer(tmp_path: Path) -> None:
    config = write_config(tmp_path, _ask("Go?", "yes,no", "0.3", "-"))
    async with running_node(config) as node:
        await wait_until(lambda: "no answer" in _output(node))


async def test_worker_exiting_while_asking_closes_its_question_as_gone(tmp_path: Path) -> None:
    sink = Recorder()
    config = write_config(tmp_path, _ask("Go?", "yes,no", "-", "-", "ask-exit", restart="never"))
    async with running_node(config, sinks=[sink]) as node:
        asked = (await _asked(sink)).question
        await wait_until(lambda: bool(sink.of(QuestionClosed)))
        (closed,) = sink.of(QuestionClosed)
        assert isinstance(closed, QuestionClosed)
        assert closed.status == "gone"
        assert _question_row(node, asked.id)["status"] == "gone"
        with pytest.raises(UnknownQuestion):
            await node.service.answer(ALICE, asked.id, "yes")


async def test_question_open_when_dsup_stops_is_gone_then_and_after_a_restart(
    tmp_path: Path,
) -> None:
    sink = Recorder()
    config = write_config(tmp_path, _ask("Go?", "yes,no", "-", "-"))
    async with running_node(config, sinks=[sink]) as node:
        asked = (await _asked(sink)).question
    async with running_node(config) as node:
        assert _question_row(node, asked.id)["status"] == "gone"
        assert [e.status for e in sink.events if isinstance(e, QuestionClosed)] == ["gone"]
        node.ledger.write(  # as a dsup killed by SIGKILL leaves it
            "UPDATE worker_questions SET status = 'open' WHERE id = ?", [(asked.id,)]
        )
    async with running_node(config) as node:
        assert _question_row(node, asked.id)["status"] == "gone"


@pytest.mark.parametrize(
    "garbage",
    [
        b"not json\n",
        b"\xff\xfe\x00binary\n",
        b"[1, 2]\n{}\n" + b'{"type": 3}\n',
        b'{"type": "nope"}\n{"type": "progress"}\n{"type": "ask", "id": 1}\n',
        b"x" * 200_000 + b"\n",
        b'{"type": "log", "level": "loud", "text": "x"}\n' + b"[" * 60_000 + b"\n",
    ],
)
async def test_worker_garbage_on_the_channel_is_counted_and_harmless(
    tmp_path: Path, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    sink = Recorder()
    config = write_config(tmp_path, _raw(tmp_path, garbage))
    async with running_node(config, sinks=[sink]) as node:
        await wait_until(lambda: bool(sink.of(ResultReported)))
        (slot,) = node.fleet.processes()
        await wait_until(lambda: slot.status().state.value == "RUNNING")
        refusals = [
            r
            for r in caplog.records
            if r.name in ("supervisor.output.channel", "supervisor.process.worker_link")
        ]
        assert refusals
        assert all(r.levelname == "WARNING" for r in refusals)
        (result,) = sink.of(ResultReported)
        assert isinstance(result, ResultReported)
        assert result.result.text == "after the garbage"


async def test_worker_flood_of_progress_is_coalesced(tmp_path: Path) -> None:
    flood = b"".join(b'{"type":"progress","fraction":%.4f}\n' % (i / 20_000) for i in range(20_001))
    sink = Recorder()
    config = write_config(tmp_path, _raw(tmp_path, flood))
    async with running_node(config, sinks=[sink]) as node:
        await wait_until(lambda: bool(sink.of(ResultReported)))
        (slot,) = node.fleet.processes()
        await wait_until(lambda: any(e.progress.fraction == 1.0 for e in _progress(sink)))
        assert len(_progress(sink)) < 100
        progress = slot.status().progress
        assert progress is not None
        assert progress.fraction == 1.0


def _link_tasks() -> int:
    """The tasks serving a worker's channel now."""
    return sum("serve_link" in (task.name or "") for task in anyio.get_running_tasks())


async def test_worker_channel_costs_a_task_only_once_the_worker_writes(tmp_path: Path) -> None:
    """Every run held a task (and a link) for its channel, though most workers never write."""
    config = write_config(
        tmp_path,
        program("quiet", "child_ready.py", numprocs=3)
        + _ask("Go?", "yes,no", "-", "-").replace("[programs.w]", "[programs.asker]"),
    )
    async with running_node(config) as node:
        await wait_until(lambda: "ready" in _output(node, "quiet:2"))
        await wait_until(lambda: bool(node.fleet.desk.open_questions()))
        await anyio.wait_all_tasks_blocked()
        assert _link_tasks() == 1  # the asker's; the three quiet workers have none
        (question,) = node.fleet.desk.open_questions()
        await node.service.answer(ALICE, question.id, "yes")
        await wait_until(lambda: "answer yes" in _output(node, "asker:0"))


async def test_worker_never_using_its_channel_has_one_and_runs_as_before(tmp_path: Path) -> None:
    config = write_config(tmp_path, program("w", "child_ready.py"))
    async with running_node(config) as node:
        await wait_until(lambda: "ready" in _output(node))
        env = json.loads(_output(node).split("ready ", 1)[1].splitlines()[0])
        assert int(env["DSUP_FD"]) > 2
        (slot,) = node.fleet.processes()
        with anyio.fail_after(10):
            await node.service.stop(ALICE, "w")
        assert slot.status().state.value == "STOPPED"
