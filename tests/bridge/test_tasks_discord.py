"""Tasks in the fake Discord: by mention in the task channel, reactions, one answer each."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from supervisor.bridge.board_text import render_board
from supervisor.bridge.tasks import EMOJI, answer_text, parse_task
from supervisor.commands.access import Actor
from supervisor.commands.health import BridgeHealth
from supervisor.state.channel_cursor import ChannelCursor
from supervisor.state.ledger import DEFERRED_MAX, Ledger
from supervisor.tasks import files
from supervisor.tasks.records import TaskRecord, TaskState
from supervisor.tasks.store import SqliteTaskStore
from tests._e2e import alive
from tests._ledger_full import ledger_full
from tests._wait import wait_until
from tests.bridge._members import members
from tests.bridge._relayed import relayed_node
from tests.discord_fake.pytest_plugin import fake_discord
from tests.discord_fake.ratelimit import ATTACHMENT_ROUTE, MESSAGES_ROUTE
from tests.tasks._tasks import held as held_tasks
from tests.tasks._tasks import task_program

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tests.bridge._members import Members
    from tests.bridge._relayed import Relayed
    from tests.discord_fake import FakeDiscord
    from tests.discord_fake.interaction import InteractionReply
    from tests.discord_fake.ratelimit import Fault

__all__ = ["fake_discord"]

pytestmark = pytest.mark.timeout(120)
CHANNELS = {"log_channel": "ops", "task_channel": "tasks"}
ECHO = task_program("echo", "echo", "{task}")


def _access(team: Members) -> dict[str, list[int]]:
    return {"operator": team.access["operator"], "viewer": team.access["viewer"]}


async def _gap_of_a_new_session(fake_discord: FakeDiscord, team: Members) -> list[dict[str, Any]]:
    """Two tasks posted while the gateway is down, resuming refused: a new session follows,
    and Discord does not send the gap's messages as events."""
    fake_discord.refuse_resume = True
    async with fake_discord.gateway_outage():
        return [
            fake_discord.post_message(
                team.operator, "tasks", f"echo: in the gap {i}", mention_bot=True
            )
            for i in range(2)
        ]


@contextlib.asynccontextmanager
async def _caught_up(
    tmp_path: Path, fake_discord: FakeDiscord, team: Members, **options: Any
) -> AsyncIterator[tuple[Relayed, int]]:
    """A node whose bridge read the task channel once (its first session's catch-up), and
    the history reads the fake served by then."""
    async with relayed_node(
        tmp_path, fake_discord, ECHO, channels=CHANNELS, access=_access(team), **options
    ) as node:
        cursor = ChannelCursor(node.ledger)
        await wait_until(lambda: cursor.get(fake_discord.channel("tasks").id) is not None)
        yield node, fake_discord.rate_limit_stats("tasks", HISTORY).requests


def _replies(fake: FakeDiscord, message_id: str) -> list[dict[str, Any]]:
    """The bot's replies to one message, as they are now."""
    return [
        m
        for m in fake.bot_messages("tasks")
        if str((m.get("message_reference") or {}).get("message_id")) == message_id
    ]


def _answers(fake: FakeDiscord, message_id: str) -> list[str]:
    """The bot's replies to one message as they read now, acknowledgements not answered yet
    aside (the answer replaces the acknowledgement)."""
    return [
        str(m["content"]).split("\u2063")[0]
        for m in _replies(fake, message_id)
        if not str(m["content"]).startswith(EMOJI[TaskState.QUEUED])
    ]


def _reactions(fake: FakeDiscord, message_id: str) -> list[str]:
    return [
        a.emoji or ""
        for a in fake.bot_actions("tasks")
        if a.kind == "react" and str(a.message_id) == message_id
    ]


def test_parse_task_takes_program_colon_text_after_a_mention() -> None:
    assert parse_task("<@42> summarize: the text\nmore", 42) == ("summarize", "the text\nmore")
    assert parse_task("summarize:x", 42) == ("summarize", "x")
    assert parse_task("<@!42>   a-b.c :  y ", 42) == ("a-b.c", "y")
    for text in ("no colon here", "<@42> status", "two words: x", ": nothing", "p:   "):
        assert parse_task(text, 42) is None


def test_answer_text_says_the_outcome_and_keeps_stderr_in_a_block() -> None:
    base = TaskRecord(
        id=7, program="p", text="t", source="discord", author="a", source_key="1",
        max_attempts=3, state=TaskState.DONE, attempts=1, created_at=0.0, started_at=0.0,
        ended_at=1.0, owner=None, lease_until=None, cancel_by=None, result="the answer\n",
        reason="", exit_code=0, exit_signal=None,
    )  # fmt: skip
    assert answer_text(base) == "✅ `p` task 7 done\nthe answer\n"
    failed = TaskRecord(
        **{
            **{f: getattr(base, f) for f in base.__dataclass_fields__},
            "state": TaskState.FAILED,
            "result": "",
            "reason": "exit code 3; last lines of stderr:\nboom ```x```",
        }
    )
    text = answer_text(failed)
    assert text.startswith("❌ `p` task 7 failed: exit code 3; last lines of stderr:\n```\n")
    assert text.count("```") == 2  # the worker's fence cannot close the block


async def test_task_message_by_an_operator_runs_and_gets_reactions_and_one_answer(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    fake_discord.add_channel("tasks")
    team = members(fake_discord)
    text = "hello; $(rm -rf /) `x` 'q'"
    async with relayed_node(
        tmp_path, fake_discord, ECHO, channels=CHANNELS, access=_access(team)
    ) as node:
        posted = fake_discord.post_message(
            team.operator, "tasks", f"echo: {text}", mention_bot=True
        )
        refused = fake_discord.post_message(
            team.viewer, "tasks", "echo: not yours", mention_bot=True
        )
        chatter = fake_discord.post_message(
            team.operator, "tasks", "just talking", mention_bot=True
        )
        await fake_discord.wait_until(
            lambda: (
                _answers(fake_discord, posted["id"])
                and EMOJI[TaskState.DONE] in _reactions(fake_discord, posted["id"])
            ),
            timeout_seconds=30,
        )
        # Nothing more is coming for the other two: the viewer's is audited, not answered.
        audit = await anyio.to_thread.run_sync(lambda: node.ledger.audit_rows(20))
    (answer,) = _answers(fake_discord, posted["id"])
    assert answer.startswith("✅ `echo` task 1 done\n")
    assert json.loads(answer.split("\n", 1)[1].split("\u2063")[0])["argv"] == [text]
    assert _reactions(fake_discord, posted["id"]) == [
        EMOJI[TaskState.QUEUED],
        EMOJI[TaskState.RUNNING],
        EMOJI[TaskState.DONE],
    ]
    assert [r["components"] for r in _replies(fake_discord, posted["id"])] == [[]]  # no Cancel
    assert _answers(fake_discord, refused["id"]) == []
    assert _reactions(fake_discord, refused["id"]) == []
    assert any(r.command == "task" and r.outcome == "refused" for r in audit)
    assert all("just talking" not in (a.content or "") for a in fake_discord.bot_actions("ops"))
    assert chatter["id"] not in {str(a.message_id) for a in fake_discord.bot_actions("tasks")}
    fake_discord.assert_within_rate_limits()


async def test_tasks_posted_while_dsup_was_away_are_taken_once(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    fake_discord.add_channel("tasks")
    team = members(fake_discord)
    options = {"channels": CHANNELS, "access": _access(team)}
    async with relayed_node(tmp_path, fake_discord, ECHO, **options) as first:  # type: ignore[arg-type]
        # The first connection marks where the channel's history begins.
        cursor = ChannelCursor(first.ledger)
        await wait_until(lambda: cursor.get(fake_discord.channel("tasks").id) is not None)
    away = [
        fake_discord.post_message(team.operator, "tasks", f"echo: while away {i}", mention_bot=True)
        for i in range(3)
    ]
    for _ in range(2):  # a second start finds nothing new: each message is one task
        async with relayed_node(tmp_path, fake_discord, ECHO, **options) as node:  # type: ignore[arg-type]
            await fake_discord.wait_until(
                lambda: all(_answers(fake_discord, m["id"]) for m in away), timeout_seconds=30
            )
            listed = (await node.service.tasks(Actor.local())).tasks
    assert [len(_answers(fake_discord, m["id"])) for m in away] == [1, 1, 1]
    assert len(listed) == 3


HISTORY = ("GET", "/channels/{channel_id}/messages")


async def test_tasks_posted_while_the_gateway_had_no_session_are_taken_once(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """Discord answered the resume with INVALID_SESSION (not resumable): discord.py
    identified again in the same client and the gap's messages never came as events.
    The desk read the channel's history back only when a client started, so they were
    lost; it now does at each new session (not at a resume, which replays them)."""
    fake_discord.add_channel("tasks")
    team = members(fake_discord)
    async with _caught_up(tmp_path, fake_discord, team) as (node, reads):
        async with fake_discord.gateway_outage():  # resumed: the gap is replayed
            replayed = fake_discord.post_message(
                team.operator, "tasks", "echo: replayed", mention_bot=True
            )
        await fake_discord.wait_until(
            lambda: _answers(fake_discord, replayed["id"]), timeout_seconds=30
        )
        assert fake_discord.rate_limit_stats("tasks", HISTORY).requests == reads
        gap = await _gap_of_a_new_session(fake_discord, team)
        await wait_until(lambda: fake_discord.identify_count == 2, seconds=20)
        live = fake_discord.post_message(
            team.operator, "tasks", "echo: in the new session", mention_bot=True
        )
        posted = [replayed, *gap, live]
        await fake_discord.wait_until(
            lambda: all(_answers(fake_discord, m["id"]) for m in posted), timeout_seconds=30
        )
        listed = (await node.service.tasks(Actor.local())).tasks
        assert node.bridge.attempts == 1  # the same client, with a new session
    assert [len(_answers(fake_discord, m["id"])) for m in posted] == [1, 1, 1, 1]
    texts = ["replayed", "in the gap 0", "in the gap 1", "in the new session"]
    assert sorted(t.text for t in listed) == sorted(texts)
    assert fake_discord.resume_count == 1
    assert fake_discord.rate_limit_stats("tasks", HISTORY).requests == reads + 1


async def test_a_failed_catch_up_is_read_again_within_the_session(
    tmp_path: Path, fake_discord: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    """A new session's reading of the task channel failed (a 503): the tasks of the gap
    were taken only at the next gateway session, maybe hours later. It is read again
    within the session, with backoff, and the failure is said once."""
    fake_discord.add_channel("tasks")
    team = members(fake_discord)
    async with _caught_up(tmp_path, fake_discord, team) as (node, reads):
        failing = fake_discord.fail_route(*HISTORY, status=503, times=2)
        gap = await _gap_of_a_new_session(fake_discord, team)
        await fake_discord.wait_until(
            lambda: all(_answers(fake_discord, m["id"]) for m in gap), timeout_seconds=30
        )
        listed = (await node.service.tasks(Actor.local())).tasks
        assert fake_discord.identify_count == 2  # no other session read it
    assert [len(_answers(fake_discord, m["id"])) for m in gap] == [1, 1]
    assert sorted(t.text for t in listed) == ["in the gap 0", "in the gap 1"]
    assert failing.hits == 2
    assert fake_discord.rate_limit_stats("tasks", HISTORY).requests == reads + 1
    told = [r for r in caplog.records if r.name == "supervisor.bridge.tasks"]
    assert [r.levelno for r in told if r.levelno >= logging.WARNING] == [logging.WARNING]


async def test_a_new_session_ends_the_retries_of_the_last_ones_catch_up(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """A catch-up waiting to read again stops when a new session begins: that session
    reads for itself, once, and the old one's wait is cut short."""
    fake_discord.add_channel("tasks")
    team = members(fake_discord)
    waits: list[anyio.Event] = []  # the catch-up's, each set when it ends
    faults: list[Fault] = []

    async def sleep(seconds: float) -> None:
        """A wait after a failed reading lasts until cancelled; the others are not served."""
        if sum(f.hits for f in faults) <= len(waits):
            return
        ended = anyio.Event()
        waits.append(ended)
        try:
            await anyio.sleep_forever()
        finally:
            ended.set()

    async with _caught_up(tmp_path, fake_discord, team, sleep=sleep) as (_, reads):
        faults.append(fake_discord.fail_route(*HISTORY, status=503, times=1))
        fake_discord.refuse_resume = True
        gap = []
        for i in range(2):  # two new sessions: the first one's reading fails
            async with fake_discord.gateway_outage():
                gap.append(
                    fake_discord.post_message(
                        team.operator, "tasks", f"echo: in gap {i}", mention_bot=True
                    )
                )
            if not i:
                await wait_until(lambda: len(waits) == 1, seconds=20)
        with anyio.fail_after(20):
            await waits[0].wait()
        await fake_discord.wait_until(
            lambda: all(_answers(fake_discord, m["id"]) for m in gap), timeout_seconds=30
        )
        assert fake_discord.identify_count == 3
    assert [len(_answers(fake_discord, m["id"])) for m in gap] == [1, 1]
    assert len(waits) == 1
    assert faults[0].hits == 1
    assert fake_discord.rate_limit_stats("tasks", HISTORY).requests == reads + 1


async def test_a_flood_of_tasks_is_all_answered_once_within_rate_limits(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """200 at once: each is one task with one answer queued; the channel's pace is kept.

    Under Discord's 5 messages per 5 s the 200 replies take over 3 minutes to go out
    (``bench/tasks_discord.py`` waits for all of them); this waits for the first 10, at
    5 per 1 s: the pace kept is the one the fake's headers give, whatever its window.
    """
    fake_discord.set_rate_limit(*MESSAGES_ROUTE, limit=5, per_seconds=1.0)
    fake_discord.add_channel("tasks")
    team = members(fake_discord)
    fast = (
        '[programs.echo]\ncommand = ["/bin/echo", "{task}"]\ntasks = "oneshot"\nconcurrency = 8\n'
    )
    async with relayed_node(
        tmp_path, fake_discord, fast, channels=CHANNELS, access=_access(team)
    ) as node:
        posted = [
            fake_discord.post_message(team.operator, "tasks", f"echo: job {i}", mention_bot=True)
            for i in range(200)
        ]
        ids = {int(m["id"]) for m in posted}

        def queued_answers() -> list[int]:
            rows = node.ledger.read(
                "SELECT reply_to FROM outbox WHERE kind = 'reply' AND reply_to IS NOT NULL", ()
            )
            return [int(r[0]) for r in rows]

        def answered() -> int:
            rows = node.ledger.read(
                "SELECT COUNT(*) FROM outbox_meta WHERE key LIKE 'task-answer:%'", ()
            )
            return int(rows[0][0])

        await wait_until(lambda: answered() >= 200, seconds=90)
        await fake_discord.wait_until(
            lambda: sum(bool(_answers(fake_discord, m["id"])) for m in posted) >= 10,
            timeout_seconds=60,
        )
        tasks = node.ledger.read("SELECT COUNT(*), COUNT(DISTINCT source_key) FROM tasks", ())
        answers = queued_answers()
    assert sorted(answers) == sorted(ids)  # one reply each (the answer, or what becomes it)
    assert tuple(tasks[0]) == (200, 200)
    assert all(len(_answers(fake_discord, m["id"])) <= 1 for m in posted)
    fake_discord.assert_within_rate_limits()


async def test_slash_task_queues_answers_in_the_channel_and_refuses_viewers(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    fake_discord.add_channel("tasks")
    team = members(fake_discord)
    plain = '[programs.web]\ncommand = ["sleep", "60"]\nautostart = false\n'
    async with relayed_node(
        tmp_path, fake_discord, ECHO, plain, channels=CHANNELS, access=_access(team)
    ) as node:
        typed = fake_discord.autocomplete(team.viewer, "tasks", "task", "program", program="e")
        choices = [c["value"] for c in (await typed.wait_reply()).choices]
        asked = fake_discord.invoke(team.operator, "tasks", "task", program="echo", text="a b")
        queued = (await asked.wait_reply()).content or ""
        await fake_discord.wait_until(
            lambda: any(
                "task 1 done" in (a.content or "") for a in fake_discord.bot_actions("tasks")
            ),
            timeout_seconds=30,
        )
        refused = fake_discord.invoke(team.viewer, "tasks", "task", program="echo", text="x")
        refusal = await refused.wait_reply()
        late = fake_discord.invoke(team.operator, "tasks", "task-cancel", id=1)
        late_reply = await late.wait_reply(kind="followup", timeout_seconds=10)
        listed = (await node.service.tasks(Actor.local())).tasks
    assert choices == ["echo"]  # only programs that take tasks
    assert queued.startswith("📥 `echo` task 1 queued")
    assert "may not task" in (refusal.content or "")
    assert refusal.message is not None
    assert int(refusal.message.get("flags") or 0) & 64  # only the viewer sees it
    assert "task 1 is already done" in (late_reply.content or "")
    assert [t.id for t in listed] == [1]


async def test_tasks_a_worker_gives_are_shown_and_answered_in_the_task_channel(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    fake_discord.add_channel("tasks")
    team = members(fake_discord)
    planner = Path(__file__).parent.parent / "workers" / "task_planner.py"
    stream = Path(__file__).parent.parent / "workers" / "task_stream.py"
    programs = (
        f"[programs.planner]\ncommand = {json.dumps([sys.executable, str(planner), 'upper'])}\n"
        'tasks = "oneshot"\n',
        f"[programs.upper]\ncommand = {json.dumps([sys.executable, str(stream)])}\n"
        'tasks = "stream"\nconcurrency = 2\n',
    )
    async with relayed_node(
        tmp_path, fake_discord, *programs, channels=CHANNELS, access=_access(team)
    ):
        posted = fake_discord.post_message(
            team.operator, "tasks", "planner: red green", mention_bot=True
        )
        await fake_discord.wait_until(
            lambda: _answers(fake_discord, posted["id"]), timeout_seconds=30
        )
        await fake_discord.wait_until(
            lambda: sum("task 2 for" in t or "task 3 for" in t for t in _texts(fake_discord)) == 2,
            timeout_seconds=30,
        )
    texts = _texts(fake_discord)
    shown = [t for t in texts if "-> `upper`" in t]
    assert sorted(shown) == [
        "📥 `planner:task1` -> `upper` (task 2): red",
        "📥 `planner:task1` -> `upper` (task 3): green",
    ]
    (answer,) = _answers(fake_discord, posted["id"])
    assert answer.startswith("✅ `planner` task 1 done\nupper: RED | upper: GREEN")
    assert any(t.startswith("✅ `upper` task 2 for `planner:task1` done") for t in texts)


def _texts(fake: FakeDiscord) -> list[str]:
    """What the bot posted in the task channel, without the outbox's invisible marker."""
    return [
        (a.content or "").split("\u2063")[0]
        for a in fake.bot_actions("tasks")
        if a.kind == "create"
    ]


def test_board_shows_queued_and_running_tasks_per_program() -> None:
    health = BridgeHealth(state="connected", since=0.0, user="dsup")
    counts = {"idle": {}, "summarize": {"queued": 3, "running": 1}, "writer": {"running": 2}}
    body = render_board([], node="n", health=health, tasks=counts).body
    quiet = render_board([], node="n", health=health, tasks={"idle": {}}).body
    assert "📋 tasks: `summarize` 3 queued, 1 running · `writer` 2 running" in body
    assert "idle" not in body
    assert "📋" not in quiet


@contextlib.asynccontextmanager
async def _held_node(
    tmp_path: Path, fake: FakeDiscord, **keys: object
) -> AsyncIterator[tuple[Relayed, Members, Path]]:
    """A node whose program ``held`` holds each task until a file ``go`` is in ``hold``."""
    fake.add_channel("tasks")
    team = members(fake)
    hold = tmp_path / "hold"
    hold.mkdir()
    held = task_program("held", "hold", str(hold), **keys)
    async with relayed_node(tmp_path, fake, held, channels=CHANNELS, access=_access(team)) as node:
        yield node, team, hold


async def _cancel_by_button(
    fake: FakeDiscord, team: Members, node: Relayed, message_id: int
) -> tuple[InteractionReply, InteractionReply, TaskRecord]:
    """A viewer, then an operator, click task 1's Cancel button: the answers and the task."""
    refused = fake.click(team.viewer, message_id, "task-cancel:1")
    refusal = await refused.wait_reply()
    clicked = fake.click(team.operator, message_id, "task-cancel:1")
    said = await clicked.wait_reply(kind="followup", timeout_seconds=20)
    queue = node.service.task_queue
    assert queue is not None
    return refusal, said, await queue.wait(1, 10)


async def test_board_counts_come_from_the_queue(tmp_path: Path, fake_discord: FakeDiscord) -> None:
    async with _held_node(tmp_path, fake_discord, concurrency=1) as (node, _, hold):
        first = await node.service.task(Actor.local(), "held", "one")
        await node.service.task(Actor.local(), "held", "two")
        await wait_until(lambda: first.id in held_tasks(hold))
        await wait_until(
            lambda: node.service.task_counts() == {"held": {"queued": 1, "running": 1}}
        )
        (hold / "go").touch()
        await wait_until(lambda: node.service.task_counts() == {})


async def test_cancel_button_under_a_slash_task_stops_it(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    async with _held_node(tmp_path, fake_discord) as (node, team, hold):
        asked = fake_discord.invoke(team.operator, "tasks", "task", program="held", text="x")
        await asked.wait_reply()
        await wait_until(lambda: 1 in held_tasks(hold))
        tree = held_tasks(hold)[1]
        message_id = asked.original_message_id
        assert message_id is not None
        refusal, said, task = await _cancel_by_button(fake_discord, team, node, message_id)
    assert "may not task-cancel" in (refusal.content or "")
    assert (said.content or "").startswith("🚫 task 1: cancelled (cancelled by otto")
    assert task.state is TaskState.CANCELLED
    assert not any(alive(p) for p in tree)


async def test_files_of_a_task_message_reach_its_directory_and_are_bounded(
    tmp_path: Path, fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 1000)
    monkeypatch.setattr(files, "MAX_TASK_FILES_BYTES", 1500)
    fake_discord.add_channel("tasks")
    team = members(fake_discord)
    given = [
        ("notes.txt", b"first"),
        ("../../evil.sh", b"rm -rf /"),
        (".hidden", b"h"),
        ("notes.txt", b"second"),
        ("a b\\c:d", bytes(range(256))),
    ]
    async with relayed_node(
        tmp_path, fake_discord, ECHO, channels=CHANNELS, access=_access(team)
    ) as node:
        posted = fake_discord.post_message(
            team.operator, "tasks", "echo: read these", mention_bot=True, files=given
        )
        too_big = fake_discord.post_message(
            team.operator, "tasks", "echo: one big", mention_bot=True, files=[("big", b"x" * 1001)]
        )
        too_many = fake_discord.post_message(
            team.operator,
            "tasks",
            "echo: two halves",
            mention_bot=True,
            files=[("a", b"x" * 800), ("b", b"y" * 800)],
        )
        await fake_discord.wait_until(
            lambda: all(_answers(fake_discord, m["id"]) for m in (posted, too_big, too_many)),
            timeout_seconds=30,
        )
        listed = (await node.service.tasks(Actor.local())).tasks
        await wait_until(lambda: not any((tmp_path / "state" / "task-files").glob("*")))
    (answer,) = _answers(fake_discord, posted["id"])
    seen = json.loads(answer.split("\n", 1)[1].split("\u2063")[0])
    assert seen["in_task_dir"]
    assert seen["files"] == {
        name: hashlib.sha256(data).hexdigest()
        for name, data in [
            ("notes.txt", b"first"),
            ("evil.sh", b"rm -rf /"),
            ("hidden", b"h"),
            ("2-notes.txt", b"second"),
            ("c_d", bytes(range(256))),
        ]
    }
    assert _answers(fake_discord, too_big["id"]) == [
        "Not queued: `big` has 1001 B, more than the 1000 B a task's file may have"
    ]
    assert _answers(fake_discord, too_many["id"]) == [
        "Not queued: the files have 1.6 KiB together, more than the 1.5 KiB a task's files may have"
    ]
    assert [t.text for t in listed] == ["read these"]


async def test_cancel_button_on_a_task_messages_acknowledgement_stops_it(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    async with _held_node(tmp_path, fake_discord) as (node, team, hold):
        posted = fake_discord.post_message(team.operator, "tasks", "held: x", mention_bot=True)
        await wait_until(lambda: 1 in held_tasks(hold))
        tree = held_tasks(hold)[1]
        await fake_discord.wait_until(lambda: bool(_replies(fake_discord, posted["id"])))
        (ack,) = _replies(fake_discord, posted["id"])
        assert ack["content"].startswith("📥 `held` task 1 queued")
        refusal, said, task = await _cancel_by_button(fake_discord, team, node, int(ack["id"]))
        await fake_discord.wait_until(
            lambda: bool(_answers(fake_discord, posted["id"])), timeout_seconds=20
        )
    assert "may not task-cancel" in (refusal.content or "")
    assert (said.content or "").startswith("🚫 task 1: cancelled (cancelled by otto")
    assert task.state is TaskState.CANCELLED
    assert not any(alive(p) for p in tree)
    (answer,) = _replies(fake_discord, posted["id"])  # the acknowledgement became the answer
    assert answer["id"] == ack["id"]
    assert answer["content"].startswith("🚫 `held` task 1 cancelled: cancelled by otto")
    assert answer["components"] == []  # nothing left to cancel


class _FillingStore(SqliteTaskStore):
    """The ledger's task store, with hooks: once the bridge found tasks to answer, and
    before it marks one answered (the moments a disk may fill up and empty)."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(ledger)
        self.on_answers: Callable[[], None] | None = None
        self.before_mark: Callable[[], None] | None = None

    def unreplied(self, limit: int) -> list[TaskRecord]:
        found = super().unreplied(limit)
        hook = self.on_answers
        if found and hook is not None:
            self.on_answers = None
            hook()
        return found

    def mark_replied(self, task_id: int, *, now: float) -> None:
        if self.before_mark is not None:
            self.before_mark()
        super().mark_replied(task_id, now=now)


async def test_task_answer_the_ledger_dropped_is_sent_later_not_marked_sent(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """Past 10,000 waiting writes a task's answer was dropped, yet the task was marked
    answered when the disk took writes again: the answer never went out."""
    fake_discord.add_channel("tasks")
    team = members(fake_discord)
    stores: list[_FillingStore] = []

    def store(ledger: Ledger) -> SqliteTaskStore:
        stores.append(_FillingStore(ledger))
        return stores[0]

    async with relayed_node(
        tmp_path, fake_discord, ECHO, channels=CHANNELS, access=_access(team), store=store
    ) as node:
        with contextlib.ExitStack() as disk:
            filled: list[int] = []

            def fill() -> None:  # full, with 10,000 writes waiting: the next ones are dropped
                disk.enter_context(ledger_full(node.ledger))
                while node.ledger.unrecorded < DEFERRED_MAX:  # bounded: one more each time
                    node.ledger.record_audit(
                        actor="a", source="local", command="c", target="", outcome=""
                    )
                filled.append(node.ledger.reserved("outbox"))

            def space_returns() -> None:
                disk.close()
                node.ledger.retry_deferred()

            (filling,) = stores
            filling.on_answers = fill
            filling.before_mark = space_returns
            first = fake_discord.post_message(team.operator, "tasks", "echo: one", mention_bot=True)
            # The answer's write was tried (and dropped) once an outbox id went past the fill's.
            await wait_until(lambda: bool(filled) and node.ledger.reserved("outbox") > filled[0])
            await anyio.to_thread.run_sync(space_returns)
        second = fake_discord.post_message(team.operator, "tasks", "echo: two", mention_bot=True)
        await fake_discord.wait_until(
            lambda: _answers(fake_discord, first["id"]) and _answers(fake_discord, second["id"]),
            timeout_seconds=30,
        )
    (answer,) = _answers(fake_discord, first["id"])
    assert answer.startswith("✅ `echo` task 1 done\n")
    assert len(_answers(fake_discord, second["id"])) == 1


@pytest.mark.parametrize(
    ("who", "is_live_done"),
    [("operator", False), ("operator", True), ("viewer", True)],
    ids=["live-in-flight", "live-answered", "live-unanswered"],
)
async def test_a_task_message_met_live_and_in_the_catch_up_is_taken_once(
    tmp_path: Path, fake_discord: FakeDiscord, who: str, is_live_done: bool
) -> None:
    """A new session's catch-up read back a message its live event had taken (or was
    taking): both ingested it, so a refusal was audited twice, and a file was downloaded
    twice into one ``.part`` folder, where the first download then failed. The second
    way now skips a message being taken, or taken or refused already."""
    fake_discord.add_channel("tasks")
    team = members(fake_discord)
    is_viewer = who == "viewer"  # refused for access: audited, not answered
    async with _caught_up(tmp_path, fake_discord, team) as (node, _):
        history = fake_discord.hold_answers(*HISTORY, times=1)
        download = fake_discord.hold_answers(*ATTACHMENT_ROUTE, times=None)
        fake_discord.refuse_resume = True
        async with fake_discord.gateway_outage():  # a new session: the gap is not sent
            refused = fake_discord.post_message(  # a NUL cannot reach argv: refused
                getattr(team, who), "tasks", "echo: a\0b", mention_bot=True, files=[("f", b"x")]
            )
            after = fake_discord.post_message(team.operator, "tasks", "echo: after")
        await wait_until(lambda: history.hits == 1, seconds=20)  # the catch-up waits
        fake_discord.replay_message("tasks", int(refused["id"]))  # and it comes live

        def refusals() -> int:
            return sum(
                r.command == "task" and r.outcome == "refused" for r in node.ledger.audit_rows(20)
            )

        if not is_viewer:
            await wait_until(lambda: download.hits == 1)  # its file comes slowly
        if is_live_done:
            download.release()
            await wait_until(lambda: refusals() == 1)
        history.release()

        def after_taken() -> bool:
            rows = node.ledger.read("SELECT 1 FROM tasks WHERE source_key = ?", (after["id"],))
            return bool(rows)

        # The catch-up takes the messages in order: past ``after``, it is past ``refused``.
        await wait_until(lambda: after_taken() or download.hits == 2)
        downloads = download.hits
        download.release()
        await fake_discord.wait_until(
            lambda: (
                (is_viewer or _answers(fake_discord, refused["id"]))
                and _answers(fake_discord, after["id"])
            ),
            timeout_seconds=30,
        )
        audit = await anyio.to_thread.run_sync(lambda: node.ledger.audit_rows(20))
        listed = (await node.service.tasks(Actor.local())).tasks
    assert downloads == (0 if is_viewer else 1)
    assert sorted(r.outcome for r in audit if r.command == "task") == ["ok", "refused"]
    answers = _answers(fake_discord, refused["id"])
    if is_viewer:
        assert answers == []
    else:
        (answer,) = answers
        assert answer.startswith("Not queued: ")
        assert "NUL" in answer
    assert [t.text for t in listed] == ["after"]
    assert not any((tmp_path / "state" / "task-files").glob("*"))
