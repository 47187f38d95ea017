"""The Discord samples in docs/ are what dsup posts: each is rendered by the bridge's own code.

A sample is a fenced block right after a ``<!-- discord: NAME -->`` comment; NAME is a
key of :data:`SAMPLES`, a function that renders that message (or those messages, one
blank line apart) from fixed inputs with the functions the bridge posts with. A fenced
block in docs/ (or README.md, or the pipeline example's) that looks like a Discord message
(:data:`LOOKS`) must be such a sample (or a ``<!-- sample: NAME -->`` that a run checks),
and a Discord phrase quoted in the prose must be part of one (``...`` stands for anything,
any number for any number). After a change of wording, rewrite the samples with
``.venv/bin/python -m tests.test_docs_discord`` and read the diff.
"""

from __future__ import annotations

import dataclasses
import difflib
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from supervisor.bridge import (
    audit_feed,
    board_text,
    incident,
    mention,
    progress,
    questions,
    tasks,
)
from supervisor.bridge.perform import Ask
from supervisor.bridge.replies import refusal, render
from supervisor.bridge.stream import OutputStream, state_note
from supervisor.commands import audit, health
from supervisor.commands.access import Command
from supervisor.commands.health import BridgeHealth
from supervisor.commands.reports import ActionReport, ProcessInfo, ProcessResult, StatusReport
from supervisor.config.schema import ProgramSpec
from supervisor.errors import AccessDenied
from supervisor.events import OrphansCleaned, ProcessState, Progress, Question, StateChanged
from supervisor.process import policy
from supervisor.process.status import ProcessStatus
from supervisor.state.outbox import summary_text
from supervisor.state.progress_posts import OpenProgress
from supervisor.state.records import AuditRecord, AuditSource
from supervisor.tasks.records import TaskRecord, TaskState

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

REPO = Path(__file__).resolve().parent.parent
DOCS = [
    *sorted((REPO / "docs").glob("*.md")),
    REPO / "README.md",
    REPO / "examples/pipeline/README.md",
]
CHANGELOG = "changelog.md"  # history: it quotes the wording of its time

T = 1_765_000_000.0  # the samples' wall clock: 2025-12-06 05:46:40 UTC
RUNNING, EXITED = ProcessState.RUNNING, ProcessState.EXITED

_FENCED = re.compile(
    r"(?:<!-- (?P<kind>discord|sample): (?P<name>[\w-]+) -->\n)?^(?P<fence>`{3,})(?P<info>[^\n]*)\n"
    r"(?P<body>.*?)\n(?P=fence)$",
    re.M | re.S,
)
_QUOTED = re.compile(r"``(?P<a>.+?)``|`(?P<b>[^`]+)`|\"(?P<c>[^\"]+)\"", re.S)
_PIECES = re.compile(r"(\.\.\.|…|\d[\d,.]*\d|\d)")

LOOKS = re.compile(
    "|".join(
        [
            *map(re.escape, board_text.EMOJI.values()),
            *map(re.escape, tasks.EMOJI.values()),
            "⛔",
            "📋",
            r"<t:\d+",
            r"omitted \(see /logs",
            "lines of relay from",
            r"crashed \d+ times",
            "recovered after",
            "Ended: ",
            "Not queued",
            r"asks \(question",
            r"needs \w+ access",
        ]
    )
)
"""What marks a text as something dsup posts in Discord."""


# -- the samples ---------------------------------------------------------------------


def _status(
    process: str, state: ProcessState, *, pid: int | None = None, since: float = T - 3600, **kw: int
) -> ProcessStatus:
    program, _, index = process.partition(":")
    return ProcessStatus(
        process=process,
        program=program,
        index=int(index),
        state=state,
        pid=pid,
        run_id=None,
        started_at=since if pid else None,
        state_since=since,
        restarts=kw.get("restarts", 0),
        last_exit_code=kw.get("code"),
        last_exit_signal=kw.get("signal"),
        last_error="",
    )


_CONNECTED = BridgeHealth(state="connected", since=T - 7200, user="dsup-bot", guild="my-team")


def _board(
    statuses: list[ProcessStatus],
    *,
    budget: int = board_text.BODY_CHARS,
    tasks: dict[str, dict[str, int]] | None = None,
) -> str:
    text = board_text.render_board(
        statuses, node="node-a", health=_CONNECTED, budget=budget, tasks=tasks
    )
    return f"{text.title}\n{board_text.description(text, at=T)}\n{text.footer}"


def ctl_status_bridge() -> str:
    """What ``dsup ctl status`` prints under its table of a node whose bridge is connected."""
    connected = BridgeHealth(
        state="connected", since=T, user="dsup-bot", guild="my-team", latency_seconds=0.048
    )
    return "\n".join(health.describe(connected, now=T))


def board() -> str:
    """The board of a small node (the embed's title, text and footer)."""
    return _board(
        [
            _status("scraper:0", RUNNING, pid=4242),
            _status("scraper:1", RUNNING, pid=4243),
            _status("flaky:0", ProcessState.BACKOFF, since=T - 20, restarts=3, code=1),
            _status("report:0", EXITED, since=T - 600, code=0),
            _status("summarize:0", RUNNING, pid=4250),
        ],
        tasks={"summarize": {"queued": 3, "running": 1}},
    )


def board_summarised() -> str:
    """The board of 40 scrapers and 2 failing processes, past what fits."""
    many = [_status(f"scraper:{i}", RUNNING, pid=5000 + i) for i in range(40)]
    failing = [
        _status("flaky:0", ProcessState.FATAL, since=T - 90, restarts=2, code=1),
        _status("flaky:1", ProcessState.BACKOFF, since=T - 20, restarts=1, signal=9),
    ]
    return _board(many + failing, budget=600)


_SCRAPER = ProgramSpec(name="scraper", command=("python3", "scraper.py"), cwd=Path("/srv"))
_TAIL = [
    "Traceback (most recent call last):",
    '  File "scraper.py", line 88, in fetch',
    "    page = session.get(url, timeout=10)",
    "requests.exceptions.ConnectionError: ('Connection aborted.', "
    "RemoteDisconnected('Remote end closed connection without response'))",
]


def _crash_loop(crashes: int, over: float) -> tuple[incident.Incidents, incident.Incident]:
    """``crashes`` crashes of scraper:0 over ``over`` seconds, as the relay feeds them."""
    incidents = incident.Incidents(recover_after=lambda _: incident.recover_seconds(1.0))
    rng = random.Random(7)
    short_runs = 0
    for n in range(crashes):
        at = T + over * n / max(crashes - 1, 1)
        decision = policy.after_exit(
            _SCRAPER,
            failures=0,
            short_runs=short_runs,
            started_at=0.0,
            now=5.0,
            exit_code=1,
            exit_signal=None,
            rng=rng,
        )
        short_runs = decision.short_runs
        event = StateChanged(
            process="scraper:0",
            program="scraper",
            old=RUNNING,
            new=decision.state,
            exit_code=1,
            reason=decision.reason,
            at=at,
        )
        incidents.on_state(event, now=at, span=None)
    crashed = incidents.changed()[0]
    crashed.tail, crashed.tail_stream = tuple(_TAIL), "stderr"
    return incidents, crashed


def incident_loop() -> str:
    """The incident of a crash loop: 14 crashes in 3 minutes, each after 5 s of running."""
    return incident.render(_crash_loop(14, 180.0)[1])


def incident_closed() -> str:
    """The same incident, closed by a minute of RUNNING."""
    incidents, crashed = _crash_loop(14, 180.0)
    up = StateChanged(
        process="scraper:0", program="scraper", old=ProcessState.STARTING, new=RUNNING, at=T + 200
    )
    incidents.on_state(up, now=T + 200, span=None)
    incidents.tick(now=T + 260, wall=T + 260)
    return incident.render(crashed)


def relay_output() -> str:
    """A message of the output relay: a state change, lines of two processes, a flood."""
    stream = OutputStream()
    stream.add_note(
        state_note(
            StateChanged(
                process="flaky:0",
                program="flaky",
                old=ProcessState.STARTING,
                new=RUNNING,
                reason="up for 1 s",  # as process/state.py words it
                at=T,
            )
        )
    )
    stream.add("report:0", b"report 2025-12-06: 3,000 rows\nsent to ops@example.com\n")
    stream.add(
        "scraper:0",
        b"page 1 ok\npage 2 ok\n```markdown in a page```\n",
        omitted=86_800,
        omitted_lines=1240,
    )
    excerpt = stream.take()
    assert excerpt is not None
    return excerpt.content


def relay_flood() -> str:
    """A message of a flood, whose omitted lines were too many to count."""
    stream = OutputStream()
    pages = b"".join(b"fetched https://example.com/page/%d in 0.2 s\n" % n for n in range(41, 44))
    stream.add("scraper:0", pages, omitted=2**20, uncounted=2**20)
    excerpt = stream.take()
    assert excerpt is not None
    return excerpt.content


def outage_summary() -> str:
    """What stands for the output messages dropped during an outage."""
    return summary_text({"scraper:0": 1240, "scraper:1": 87}, 720.0)


def audit_lines() -> str:
    """A message of the audit channel: commands, a refusal, a FATAL, orphans cleaned."""
    restart = ActionReport(
        command=Command.RESTART,
        target="scraper",
        processes=tuple(
            ProcessResult(process=f"scraper:{i}", outcome="ok", state=RUNNING) for i in range(2)
        ),
    )
    denied = AccessDenied("bob (456789012345678901)", "stop", "OPERATOR", "VIEWER")
    rows: list[tuple[str, AuditSource, str, str, str, object]] = [
        ("alice (345678901234567890)", "discord", "restart", "scraper", "ok", restart),
        ("otto", "local", "status", "", "ok", None),  # read-only and fine: not shown
        ("bob (456789012345678901)", "discord", "stop", "all", "refused", denied),
    ]
    records = [
        AuditRecord(
            id=i,
            at=T + i,
            actor=actor,
            source=source,
            command=command,
            target=target,
            outcome=outcome,
            detail=str(result) if isinstance(result, Exception) else audit.summarize(result, ""),
        )
        for i, (actor, source, command, target, outcome, result) in enumerate(rows)
    ]
    fatal = StateChanged(
        process="flaky:0",
        program="flaky",
        old=ProcessState.BACKOFF,
        new=ProcessState.FATAL,
        exit_code=1,
        reason="exited too quickly; gave up after 3 failed starts in a row",
        at=T + 5,
    )
    lines = [
        *audit_feed.command_lines(records),
        audit_feed.fatal_line(fatal),
        audit_feed.orphans_line(OrphansCleaned(pids=(31337, 31338), reason="startup"), T + 6),
    ]
    return "\n\n".join(audit_feed.pack(lines))


def slash_status() -> str:
    """The public answer to ``/status``."""
    processes = (
        ProcessInfo(
            status=_status("scraper:0", RUNNING, pid=4242), rss_bytes=48 << 20, cpu_percent=12.5
        ),
        ProcessInfo(
            status=_status("scraper:1", RUNNING, pid=4243), rss_bytes=47 << 20, cpu_percent=0.4
        ),
        ProcessInfo(
            status=dataclasses.replace(
                _status("flaky:0", ProcessState.BACKOFF, since=T - 20, restarts=3, code=1),
                reason="exited too quickly; failed start 2 of 3, next try in 1.92 s",
            )
        ),
    )
    report = StatusReport(node="node-a", at=T, processes=processes)
    return render(report, title=Ask(verb="status").title).content


def slash_restart() -> str:
    """The public answer to ``/restart scraper``."""
    report = ActionReport(
        command=Command.RESTART,
        target="scraper",
        processes=tuple(
            ProcessResult(process=f"scraper:{i}", outcome="ok", state=RUNNING, pid=4300 + i)
            for i in range(2)
        ),
    )
    return render(report, title=Ask(verb="restart", target="scraper").title).content


def mention_unknown() -> str:
    """The reply to a mention that asks for nothing dsup knows (``@dsup frobnicate``)."""
    said = mention.parse(["frobnicate"])
    assert isinstance(said, str)
    return said


def refused() -> str:
    """The private answer to a member who may not run a command."""
    return refusal(
        AccessDenied("bob (456789012345678901)", "restart", "OPERATOR", "VIEWER")
    ).content


_PROGRESS = Progress(fraction=0.4, text="page 40 of 100", done=40, total=100, at=T)


def progress_running() -> str:
    """A run's progress message."""
    return progress.progress_text("scraper:0", _PROGRESS)


def progress_ended() -> str:
    """Its last edit when the run ends while dsup watches."""
    end = StateChanged(
        process="scraper:0",
        program="scraper",
        old=RUNNING,
        new=EXITED,
        exit_code=0,
        reason="not restarted: restart = on-failure",
        at=T + 60,
    )
    return progress.progress_text("scraper:0", _PROGRESS, progress.ended_text(end))


def progress_settled() -> str:
    """The last edits of runs whose dsup was killed, made at its next start."""
    content = progress.progress_text("scraper:0", _PROGRESS)
    ends = [(T, 3, None), (T, None, 15), (None, None, None)]
    return "\n\n".join(
        progress.settled_text(
            OpenProgress(
                run_id="r1", row_id=1, content=content, ended_at=at, exit_code=code, exit_signal=sig
            )
        )
        for at, code, sig in ends
    )


_QUESTION = Question(
    id=3,
    process="cleanup:0",
    program="cleanup",
    run_id="r1",
    worker_id="q1",
    text="Delete 3,000 stale rows?",
    choices=("yes", "no"),
    default="no",
    asked_at=T,
    timeout_at=T + 600,
)


def question_open() -> str:
    """A worker's question, with its buttons under it (one per choice)."""
    return questions.question_text(_QUESTION)


def question_answered() -> str:
    """The same question once answered."""
    return questions.closed_text(_QUESTION, "answered", "yes", "alice", T + 42)


def _task(state: TaskState, **kw: str) -> TaskRecord:
    return TaskRecord(
        id=17,
        program="summarize",
        text="the text to summarize",
        source="discord",
        author="alice (345678901234567890)",
        source_key="1300000000000000000",
        max_attempts=3,
        state=state,
        attempts=1,
        created_at=T,
        started_at=T,
        ended_at=T + 9,
        owner=None,
        lease_until=None,
        cancel_by=None,
        result=kw.get("result", ""),
        reason=kw.get("reason", ""),
        exit_code=None,
        exit_signal=None,
        reply_channel=1,
        reply_to=1300000000000000000,
    )


def task_queued() -> str:
    """The reply to a task message while its task waits or runs (with a Cancel button)."""
    return tasks.acknowledgement(_task(TaskState.QUEUED))


def task_done() -> str:
    """The reply, edited into the task's answer."""
    return tasks.answer_text(_task(TaskState.DONE, result="Three points: ..."))


def task_failed() -> str:
    """The answer of a task whose process failed."""
    reason = "exit code 1\nTraceback (most recent call last):\nValueError: empty text"
    return tasks.answer_text(_task(TaskState.FAILED, reason=reason))


def task_announced() -> str:
    """A task a worker gave, shown in the task channel."""
    step = _task(TaskState.QUEUED)
    planner = TaskRecord(
        **{
            **{f: getattr(step, f) for f in step.__dataclass_fields__},
            "id": 14,
            "program": "writer",
            "text": "a paragraph on otters",
            "source": "worker",
            "author": "planner:0",
        }
    )
    return tasks.announcement(planner)


def task_refused() -> str:
    """The reply to a task message whose file is too big."""
    why = tasks.too_big([("big.iso", 700 * 2**20)])
    return f"Not queued: {why}"


SAMPLES: dict[str, Callable[[], str]] = {
    "ctl-status-bridge": ctl_status_bridge,
    "board": board,
    "board-summarised": board_summarised,
    "incident-loop": incident_loop,
    "incident-closed": incident_closed,
    "relay-output": relay_output,
    "relay-flood": relay_flood,
    "outage-summary": outage_summary,
    "audit": audit_lines,
    "slash-status": slash_status,
    "slash-restart": slash_restart,
    "mention-unknown": mention_unknown,
    "refused": refused,
    "progress-running": progress_running,
    "progress-ended": progress_ended,
    "progress-settled": progress_settled,
    "question-open": question_open,
    "question-answered": question_answered,
    "task-queued": task_queued,
    "task-done": task_done,
    "task-failed": task_failed,
    "task-announced": task_announced,
    "task-refused": task_refused,
}
"""Each sample's name, and what renders it."""


# -- reading the docs ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    """A fenced block of a doc: its sample name ("" when unmarked) and text.

    ``checked`` is True for a ``<!-- discord: NAME -->`` sample, which :data:`SAMPLES`
    renders; a ``<!-- sample: NAME -->`` is a run's (tests/test_docs.py, or the test of
    the page's example).
    """

    doc: Path
    name: str
    checked: bool
    body: str
    start: int
    end: int


def blocks(doc: Path) -> Iterator[Block]:
    """The fenced blocks of ``doc`` (their span covers the marker comment too)."""
    for found in _FENCED.finditer(doc.read_text(encoding="utf-8")):
        name, checked = found["name"] or "", found["kind"] == "discord"
        yield Block(doc, name, checked, found["body"], found.start(), found.end())


def quotes(text: str) -> list[str]:
    """What ``text`` quotes (code spans and double quotes) that looks like a Discord message."""
    return [q for m in _QUOTED.finditer(text) if LOOKS.search(q := next(filter(None, m.groups())))]


def _prose(doc: Path) -> str:
    text = doc.read_text(encoding="utf-8")
    for block in reversed(list(blocks(doc))):
        text = text[: block.start] + text[block.end :]
    return text


def _pattern(quote: str) -> re.Pattern[str]:
    """``quote`` as a pattern: ``...`` for anything, a number for any number."""
    parts = []
    for piece in _PIECES.split(" ".join(quote.split())):
        if piece in ("...", "…"):
            parts.append(".*")
        elif piece and piece[0].isdigit():
            parts.append(r"\d[\d,.]*")
        else:
            parts.append(r"\s+".join(map(re.escape, piece.split(" "))))
    return re.compile("".join(parts))


def _fence(body: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    return "`" * max(3, longest + 1)


def write_samples() -> list[Path]:
    """Rewrite every marked sample with what dsup renders now; the docs changed."""
    changed = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for block in reversed(list(blocks(doc))):
            if block.checked and block.name in SAMPLES:
                body = SAMPLES[block.name]()
                fence = _fence(body)
                new = f"<!-- discord: {block.name} -->\n{fence}\n{body}\n{fence}"
                text = text[: block.start] + new + text[block.end :]
        if text != doc.read_text(encoding="utf-8"):
            doc.write_text(text, encoding="utf-8")
            changed.append(doc)
    return changed


# -- the tests ---------------------------------------------------------------------------


def _marked() -> list[Block]:
    return [b for doc in DOCS for b in blocks(doc) if b.checked]


def test_docs_discord_samples_are_what_dsup_posts() -> None:
    """docs/tasks.md showed a board line and task replies without the names' backticks."""
    drifted = []
    for block in _marked():
        assert block.name in SAMPLES, f"{block.doc.name}: no renderer for sample {block.name!r}"
        real = SAMPLES[block.name]()
        if block.body != real:
            diff = difflib.unified_diff(
                block.body.splitlines(), real.splitlines(), "docs", "dsup", lineterm=""
            )
            drifted.append(f"{block.doc.name}: sample {block.name}\n" + "\n".join(diff))
    assert not drifted, (
        "\n\n".join(drifted) + "\n\nrewrite them: .venv/bin/python -m tests.test_docs_discord"
    )


def test_docs_show_every_discord_sample() -> None:
    shown = {b.name for b in _marked()}
    assert shown == set(SAMPLES), f"not in docs/: {sorted(set(SAMPLES) - shown)}"


def test_docs_discord_looking_blocks_are_marked() -> None:
    unmarked = [
        f"{b.doc.name}: {b.body[:80]!r}"
        for doc in DOCS
        if doc.name != CHANGELOG
        for b in blocks(doc)
        if not b.name and LOOKS.search(b.body)
    ]
    assert not unmarked, "mark each with <!-- discord: NAME --> and add NAME to SAMPLES:\n" + (
        "\n".join(unmarked)
    )


def test_docs_discord_quotes_are_part_of_a_sample() -> None:
    rendered = [render() for render in SAMPLES.values()]
    stray = [
        f"{doc.name}: {quote!r}"
        for doc in DOCS
        if doc.name != CHANGELOG
        for quote in quotes(_prose(doc))
        if not any(_pattern(quote).search(text) for text in rendered)
    ]
    assert not stray, "quoted in the prose, but no sample shows it:\n" + "\n".join(stray)


@pytest.mark.parametrize(
    ("quote", "text", "found"),
    [
        (
            "crashed 14 times in 3m00s, now EXITED: ...",
            "🔴 x crashed 3 times in 1m10s, now EXITED: y",
            True,
        ),
        ("... 1.2 MiB of scraper:0 omitted", "... 80 KiB of scraper:0 omitted", False),
        ("1,240 lines", "87 lines", True),
    ],
)
def test_docs_discord_quote_pattern(quote: str, text: str, found: bool) -> None:
    assert bool(_pattern(quote).search(text)) is found


def main() -> None:
    """Rewrite the samples in docs/ (``python -m tests.test_docs_discord``)."""
    for doc in write_samples():
        sys.stdout.write(f"rewrote {doc}\n")


if __name__ == "__main__":
    main()
