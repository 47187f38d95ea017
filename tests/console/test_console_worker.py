"""What the console shows of workers' progress, logs, results and questions."""

from __future__ import annotations

import io
import json
import re

import anyio
from rich.console import Console as RichConsole

from supervisor.console.console import Console
from supervisor.console.layout import layout
from supervisor.events import (
    Event,
    ProcessState,
    Progress,
    ProgressReported,
    Question,
    QuestionAsked,
    QuestionClosed,
    ResultReported,
    WorkerLogged,
    WorkerResult,
)
from supervisor.process.status import ProcessStatus

AT = 1_700_000_000.0
QUESTION = Question(
    id=3,
    process="w:0",
    program="w",
    run_id="r",
    worker_id='"q1"',
    text="Delete 3,000 stale rows?",
    choices=("yes", "no"),
    default="no",
    asked_at=AT,
    timeout_at=AT + 600,
)
RESULT = WorkerResult(
    id=7,
    process="w:0",
    program="w",
    run_id="r",
    text="scraped 3,000 rows",
    data='{"rows": 3000}',
    files=("/tmp/out.csv",),
    at=AT,
)
EVENTS: list[Event] = [
    ProgressReported(
        process="w:0", run_id="r", progress=Progress(fraction=0.4, text="p 40", at=AT)
    ),
    WorkerLogged(process="w:0", run_id="r", level="warning", text="slow down", at=AT),
    ResultReported(result=RESULT),
    QuestionAsked(question=QUESTION),
    QuestionClosed(question=QUESTION, status="answered", answer="yes", by="alice", at=AT),
    QuestionClosed(question=QUESTION, status="gone", at=AT),
]


async def _written(console: Console, stream: io.StringIO) -> list[str]:
    async with anyio.create_task_group() as tg:
        await tg.start(console.run)
        for event in EVENTS:
            console.deliver(event)
        tg.cancel_scope.cancel()
    return stream.getvalue().splitlines()


async def test_console_plain_shows_each_worker_event_as_a_timed_line() -> None:
    out = io.StringIO()
    shown = [line.split(" ", 1)[1] for line in await _written(Console(stream=out, live=False), out)]
    assert shown == [
        "w:0  40% ████░░░░░░ p 40",
        "w:0 [warning] slow down",
        'w:0 result 7: scraped 3,000 rows {"rows": 3000} /tmp/out.csv',
        "w:0 asks #3: Delete 3,000 stale rows? [yes/no] (dsup ctl answer 3 CHOICE)",
        "w:0 question #3 answered 'yes' by alice",
        "w:0 question #3 closed: its asker is gone",
    ]


async def test_console_json_logs_give_worker_events_their_own_types() -> None:
    out = io.StringIO()
    objects = [
        json.loads(line) for line in await _written(Console(stream=out, json_logs=True), out)
    ]
    assert [o["type"] for o in objects] == [
        "progress",
        "worker_log",
        "result",
        "question",
        "question_closed",
        "question_closed",
    ]
    assert objects[2]["data"] == {"rows": 3000}
    assert (objects[3]["id"], objects[3]["choices"]) == (3, ["yes", "no"])
    assert (objects[4]["status"], objects[4]["by"]) == ("answered", "alice")


def _row(index: int, **fields: object) -> ProcessStatus:
    return ProcessStatus(
        process=f"w:{index}",
        program="w",
        index=index,
        state=ProcessState.RUNNING,
        pid=4000 + index,
        run_id=f"r{index}",
        started_at=AT,
        state_since=AT,
        restarts=0,
        last_exit_code=None,
        last_exit_signal=None,
        last_error="",
        **fields,  # type: ignore[arg-type]
    )


def _view(rows: list[ProcessStatus], width: int) -> list[str]:
    out = io.StringIO()
    rich = RichConsole(file=out, width=width, height=20, force_terminal=False)
    rich.print(layout("n", rows, [], size=(width, 20), busy={})[0])
    return out.getvalue().splitlines()


def test_live_view_shows_a_progress_bar_and_an_open_question_per_process() -> None:
    rows = [
        _row(0, progress=Progress(fraction=0.45, text="page 45 of 100", at=AT)),
        _row(1, question=QUESTION),
        _row(2),
    ]
    shown = _view(rows, 120)
    assert any("PROGRESS" in line for line in shown), shown
    assert any(re.search(r"w:0 .*  45% ████▌░░░░░ page 45 of 100", line) for line in shown), shown
    assert any(re.search(r"w:1 .* asks #3: Delete 3,000 stale rows\?", line) for line in shown)
    narrow = _view(rows, 60)
    assert max(map(len, narrow)) <= 60, narrow
    assert any(re.search(r"w:0 .*  45%", line) for line in narrow), narrow


def test_live_view_without_worker_reports_has_no_progress_column() -> None:
    assert not any("PROGRESS" in line for line in _view([_row(0)], 120))
