"""Workers' questions in Discord: buttons, who may answer, timeouts, drops and restarts.

Real workers ask through worker_sdk; a real node and bridge talk to the fake Discord
over HTTP and a websocket; members click as Discord would.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import anyio

from supervisor.bridge.bridge import DiscordBridge
from supervisor.bridge.outbound import Outbound
from supervisor.bridge.questions import answer_id
from supervisor.commands.access import Actor
from supervisor.config.schema import load_config
from tests._control import program, running_node, write_config
from tests._wait import wait_until
from tests.bridge import _relayed as relayed
from tests.bridge._bridge import discord_table, token_file
from tests.bridge._members import final_answer, is_private, members
from tests.discord_fake import GUILD_READY_TIMEOUT
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from supervisor.events import Event, EventSink
    from tests._control import Node
    from tests.bridge._members import Members
    from tests.discord_fake import FakeDiscord, FakeUser, InteractionRecord

__all__ = ["fake_discord"]

_LOCAL = Actor.local()


def _asker(question: str, choices: str, timeout: str, default: str, mode: str = "ask") -> str:
    return program(
        "w",
        "sdk_worker.py",
        mode,
        question,
        choices,
        timeout,
        default,
        relay="results",
        restart="never",
    )


@contextlib.asynccontextmanager
async def _served(
    tmp_path: Path, fake: FakeDiscord, team: Members, *programs: str
) -> AsyncIterator[tuple[Node, DiscordBridge]]:
    """A node of ``programs`` with its bridge and its question relay, results in #results."""
    results = fake.channel("results") if _has(fake, "results") else fake.add_channel("results")
    table = discord_table(
        fake,
        token_file(tmp_path, fake.token),
        viewer=team.access["viewer"],
        operator=team.access["operator"],
        admin=team.access["admin"],
    ).replace("[discord]\n", f"[discord]\nresults_channel = {results.id}\n", 1)
    path = write_config(tmp_path, *programs, table)
    config = load_config(path)
    assert config.discord is not None
    later = _Later()
    async with running_node(path, sinks=[later]) as node:
        specs = config.programs
        outbound = Outbound(
            config.discord,
            node.ledger,
            lambda: specs,
            log_dir=node.state.log_dir,
            progress_options={"edit_seconds": 0.5, "tick_seconds": 0.1},
        )
        later.attach(*outbound.sinks)
        bridge = DiscordBridge(
            config.discord,
            node=config.supervisor.name,
            ledger=node.ledger,
            http_trace=outbound.sender.trace_config(),
            client_options={"guild_ready_timeout": GUILD_READY_TIMEOUT},
        )
        async with anyio.create_task_group() as tg:
            await tg.start(bridge.run, node.service)
            # After the fleet, as dsup does: the questions the last dsup left open are closed.
            await tg.start(outbound.run, lambda: bridge.client)
            try:
                yield node, bridge
            finally:
                tg.cancel_scope.cancel("test over")


class _Later:
    """A sink that keeps events until the relays (made once the ledger is open) are."""

    def __init__(self) -> None:
        self.kept: list[Event] = []
        self.targets: tuple[EventSink, ...] = ()

    def deliver(self, event: Event) -> None:
        if not self.targets:
            self.kept.append(event)
        for target in self.targets:
            target.deliver(event)

    def attach(self, *targets: EventSink) -> None:
        self.targets = targets
        for event in self.kept:
            for target in targets:
                target.deliver(event)


def _has(fake: FakeDiscord, name: str) -> bool:
    try:
        fake.channel(name)
    except LookupError:
        return False
    return True


async def _question_message(fake: FakeDiscord, text: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((m for m in fake.bot_messages("results") if text in m["content"]), None)

    return await fake.wait_until(found, timeout_seconds=15)


def _buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for row in message.get("components") or [] for c in row.get("components", [])]


def _click(
    fake: FakeDiscord, user: FakeUser, message: dict[str, Any], button: int
) -> InteractionRecord:
    return fake.click(user, int(message["id"]), _buttons(message)[button]["custom_id"])


def _output(node: Node) -> str:
    path = node.state.log_dir / "w-0.out.log"
    return path.read_text() if path.exists() else ""


async def _settled(fake: FakeDiscord, message_id: int, words: str) -> dict[str, Any]:
    def edited() -> dict[str, Any] | None:
        for m in fake.bot_messages("results"):
            if int(m["id"]) == message_id and words in m["content"]:
                return m
        return None

    return await fake.wait_until(edited, timeout_seconds=15)


async def test_question_is_answered_by_the_first_operator_click_and_refused_to_others(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    asker = _asker("Delete 3,000 stale rows?", "yes,no", "-", "-")
    async with _served(tmp_path, fake_discord, team, asker) as (node, _):
        message = await _question_message(fake_discord, "Delete 3,000 stale rows?")
        (question,) = (await node.service.asks(_LOCAL)).questions
        assert "w:0" in message["content"]
        buttons = _buttons(message)
        assert [(b["label"], b["custom_id"]) for b in buttons] == [
            ("yes", answer_id(question.id, 0)),
            ("no", answer_id(question.id, 1)),
        ]
        mid = int(message["id"])
        for outsider in (team.nobody, team.viewer):
            refused = await final_answer(fake_discord.click(outsider, mid, buttons[0]["custom_id"]))
            assert is_private(refused)
            assert "may not answer" in (refused.content or "")
        assert (await node.service.asks(_LOCAL)).questions  # still open
        answered = await final_answer(
            fake_discord.click(team.operator, mid, buttons[1]["custom_id"])
        )
        assert is_private(answered)
        assert "**no**" in (answered.content or "")
        await wait_until(lambda: "answer no" in _output(node))
        shown = await _settled(fake_discord, mid, "Answered **no** by otto")
        assert all(b.get("disabled") for b in _buttons(shown))
        late = await final_answer(fake_discord.click(team.admin, mid, buttons[0]["custom_id"]))
        assert is_private(late)
        assert "is not open" in (late.content or "")
        row = node.ledger.read("SELECT * FROM worker_questions WHERE id = ?", (question.id,))[0]
        assert (row["status"], row["answer"], row["source"]) == ("answered", "no", "discord")
        assert row["answered_by"].startswith("otto (")
        outcomes = [
            (r.actor.split(" ")[0], r.outcome)
            for r in node.ledger.audit_rows()
            if r.command == "answer"
        ]
        assert outcomes == [
            ("ada", "failed"),
            ("otto", "ok"),
            ("vera", "refused"),
            ("nora", "refused"),
        ]


async def test_question_timing_out_shows_the_default_the_worker_got(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    asker = _asker("Go ahead?", "yes,no", "1", "no")
    async with _served(tmp_path, fake_discord, team, asker) as (node, _):
        message = await _question_message(fake_discord, "Go ahead?")
        assert "Unanswered, it gets the answer **no** <t:" in message["content"]
        await wait_until(lambda: "answer no" in _output(node))
        shown = await _settled(fake_discord, int(message["id"]), "Nobody answered in time")
        assert "the default **no**" in shown["content"]
        assert all(b.get("disabled") for b in _buttons(shown))


async def test_question_of_a_worker_that_exits_says_its_asker_is_gone(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    asker = _asker("Still there?", "yes,no", "-", "-", mode="ask-exit")
    async with _served(tmp_path, fake_discord, team, asker):
        message = await _question_message(fake_discord, "Still there?")
        shown = await _settled(fake_discord, int(message["id"]), "the asker is gone")
        assert all(b.get("disabled") for b in _buttons(shown))
        click = fake_discord.click(
            team.operator, int(message["id"]), _buttons(message)[0]["custom_id"]
        )
        assert "is not open" in ((await final_answer(click)).content or "")


async def test_question_button_answers_after_a_gateway_drop(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    asker = _asker("Deploy now?", "yes,no", "-", "-")
    async with _served(tmp_path, fake_discord, team, asker) as (node, _):
        message = await _question_message(fake_discord, "Deploy now?")
        resumes = fake_discord.resume_count
        await fake_discord.drop_gateway()
        await fake_discord.wait_until(lambda: fake_discord.resume_count > resumes or None)
        click = fake_discord.click(
            team.operator, int(message["id"]), _buttons(message)[0]["custom_id"]
        )
        assert "**yes**" in ((await final_answer(click)).content or "")
        await wait_until(lambda: "answer yes" in _output(node))


async def test_question_left_open_by_a_stopped_dsup_is_settled_at_the_next_start(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    asker = _asker("Keep going?", "yes,no", "-", "-")
    async with _served(tmp_path, fake_discord, team, asker):
        message = await _question_message(fake_discord, "Keep going?")
    quiet = program("w", "child_ready.py", relay="results")  # asks nothing this time
    async with _served(tmp_path, fake_discord, team, quiet):
        shown = await _settled(fake_discord, int(message["id"]), "the asker is gone")
        assert all(b.get("disabled") for b in _buttons(shown))
        # The button of the last dsup's message is still understood: it says why not.
        click = fake_discord.click(
            team.operator, int(message["id"]), _buttons(message)[1]["custom_id"]
        )
        assert "is not open" in ((await final_answer(click)).content or "")


async def test_result_is_posted_to_the_results_channel_through_the_outbox(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    fake_discord.add_channel("results")
    fake_discord.add_channel("ops")
    shown = relayed.program("w", "sdk_worker.py", "report", relay="results")
    hidden = relayed.program("quiet", "sdk_worker.py", "report", relay="errors")
    channels = {"log_channel": "ops", "results_channel": "results"}
    async with relayed.relayed_node(
        tmp_path, fake_discord, shown, hidden, channels=channels
    ) as node:

        def posted() -> dict[str, Any] | None:
            return next(
                (m for m in fake_discord.bot_messages("results") if "did 3 rows" in m["content"]),
                None,
            )

        message = await fake_discord.wait_until(posted, timeout_seconds=15)
        content = message["content"]
        assert content.startswith("**w:0** result ")
        assert "`out.csv`" in content
        (embed,) = message["embeds"]
        assert [(f["name"], f["value"]) for f in embed["fields"]] == [("rows", "3")]
        (file,) = message["attachments"]
        assert file["filename"] == "out.csv"
        assert fake_discord.store.attachments[int(file["id"])] == b"a,b\n1,2\n"
        # The other program's result is recorded, and was not given to the outbox.
        await wait_until(lambda: bool(node.fleet.store.recent_results(["quiet:0"], 1)))
        await node.outbound.relay.flush(final=True)
        rows = node.ledger.read("SELECT content FROM outbox WHERE kind = 'result'")
        assert [r["content"].split(" ")[0] for r in rows] == ["**w:0**"]


async def test_free_text_question_is_answered_in_a_text_box(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    asker = _asker("Which table?", "-", "-", "-")
    async with _served(tmp_path, fake_discord, team, asker) as (node, _):
        message = await _question_message(fake_discord, "Which table?")
        (button,) = _buttons(message)
        assert button["label"] == "Answer…"
        refused = await final_answer(_click(fake_discord, team.viewer, message, 0))
        assert is_private(refused)
        assert "may not answer" in (refused.content or "")
        opened = _click(fake_discord, team.operator, message, 0)
        modal = await opened.wait_reply()
        assert modal.type == 9
        submitted = fake_discord.submit_modal(opened, {"answer": "  stale_rows  "})
        answered = await final_answer(submitted)
        assert is_private(answered)
        assert "stale\\_rows" in (answered.content or "")
        await wait_until(lambda: "answer stale_rows" in _output(node))
        await _settled(fake_discord, int(message["id"]), "by otto")


def _progress_messages(fake: FakeDiscord, process: str) -> list[dict[str, Any]]:
    return [m for m in fake.bot_messages("results") if m["content"].startswith(f"**{process}** `")]


async def test_progress_is_one_message_per_run_finished_at_100_percent(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    reporter = program("w", "sdk_worker.py", "report", relay="results")
    async with _served(tmp_path, fake_discord, team, reporter):

        def finished() -> list[dict[str, Any]] | None:
            found = _progress_messages(fake_discord, "w:0")
            return found if found and "100%" in found[0]["content"] else None

        (message,) = await fake_discord.wait_until(finished, timeout_seconds=15)
        assert "step 10" in message["content"]
        edits = [a for a in fake_discord.bot_actions("results") if a.kind == "edit"]
        assert len(edits) <= 2  # eleven calls: a post and at most a couple of edits


async def test_progress_of_a_run_that_exits_midway_says_where_it_ended(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    (tmp_path / "raw").write_bytes(b'{"type":"progress","fraction":0.4,"text":"page 40"}\n')
    quitter = program(
        "w", "sdk_worker.py", "raw", str(tmp_path / "raw"), "exit", relay="results", restart="never"
    )
    async with _served(tmp_path, fake_discord, team, quitter):

        def ended() -> dict[str, Any] | None:
            found = _progress_messages(fake_discord, "w:0")
            return found[0] if found and "Ended: EXITED" in found[0]["content"] else None

        message = await fake_discord.wait_until(ended, timeout_seconds=15)
        assert " 40% " in message["content"]
        assert "page 40" in message["content"]
        assert len(_progress_messages(fake_discord, "w:0")) == 1
