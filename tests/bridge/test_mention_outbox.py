"""Answers to commands by mention go through the outbox: they arrive once, whatever fails.

The command has run when its answer is written; an outage, a lost answer or a restart of
dsup in the middle of an outage must neither lose that answer nor post it twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from typing import TYPE_CHECKING, Any

import anyio

from supervisor.bridge.replies import MESSAGE_LIMIT
from supervisor.state.outbox import MAX_CONTENT_CHARS
from supervisor.state.outbox_files import DIR_NAME, MAX_BYTES
from tests._control import program
from tests._wait import wait_until
from tests.bridge._bridge import bridged_node, discord_table, dsup_process, stop_process, token_file
from tests.bridge._members import final_answer, members
from tests.bridge._relayed import program as relay_program
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

    from supervisor.state.ledger import Ledger
    from tests.bridge._members import Members
    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

MESSAGES = ("POST", "/channels/{channel_id}/messages")
WEB = program("web", "ctl_ticker.py", "0.05", numprocs=2)


def _answers(fake: FakeDiscord, asked: dict[str, Any]) -> list[dict[str, Any]]:
    """The bot's messages replying to ``asked``."""
    return [
        m
        for m in fake.bot_messages("general")
        if (m.get("message_reference") or {}).get("message_id") == asked["id"]
    ]


def _shown(message: dict[str, Any]) -> str:
    """The content without the outbox's invisible marker."""
    return str(message["content"]).split("\u2063")[0]


def _node(tmp_path: Path, fake: FakeDiscord, team: Members) -> Any:
    return bridged_node(
        tmp_path,
        fake,
        WEB,
        status_channel=None,  # no board: only answers are posted
        viewer=team.access["viewer"],
        operator=team.access["operator"],
        admin=team.access["admin"],
    )


def _replies(ledger: Path) -> list[tuple[str, int, int | None]]:
    """(status, attempts, message id) of the outbox's replies, read once dsup stopped (a
    sender that stops marks what Discord confirmed)."""
    with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT status, attempts, message_id FROM outbox WHERE kind = 'reply'")
        return [(str(status), int(n), message_id) for status, n, message_id in rows]


async def test_mention_answer_given_during_a_5xx_outage_arrives_once_after_it(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """The restart ran during the outage; its answer was lost with the direct reply."""
    team = members(fake_discord)
    async with _node(tmp_path, fake_discord, team) as bridged:
        node = bridged.node
        await wait_until(lambda: all(c.status().pid for c in node.fleet.processes()))
        before = node.fleet.resolve("web:1")[0].status().pid
        outage = fake_discord.fail_route(*MESSAGES, status=503, times=None)
        asked = fake_discord.post_message(
            team.operator, "general", "restart web:1", mention_bot=True
        )
        await wait_until(lambda: outage.hits >= 2, seconds=20)  # tried, refused, tried again
        after = node.fleet.resolve("web:1")[0].status().pid
        assert after != before  # the command ran at once
        assert _answers(fake_discord, asked) == []
        fake_discord.clear_faults()
        (answer,) = await fake_discord.wait_until(
            lambda: _answers(fake_discord, asked), timeout_seconds=20
        )
        assert answer["content"].startswith("/restart web:1: 1 process, 1 ok")
        assert answer["mentions"] == []
        restarts = [r for r in node.ledger.audit_rows(50) if r.command == "restart"]
        assert len(restarts) == 1
    assert [status for status, _, _ in _replies(node.ledger.path)] == ["sent"]
    assert len(_answers(fake_discord, asked)) == 1


async def test_mention_answer_whose_response_is_lost_is_not_doubled(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """Discord posted the answer but its response never came: the retry carries the same
    nonce, so Discord hands back the first message, and the row records that one."""
    team = members(fake_discord)
    async with _node(tmp_path, fake_discord, team) as bridged:
        lost = fake_discord.lose_answers(*MESSAGES, times=1)
        asked = fake_discord.post_message(team.viewer, "general", "status web", mention_bot=True)
        (answer,) = await fake_discord.wait_until(
            lambda: _answers(fake_discord, asked), timeout_seconds=20
        )
        await wait_until(lambda: bridged.sender.sent == 1)
    assert lost.hits == 1
    ((status, attempts, message_id),) = _replies(bridged.node.ledger.path)
    assert status == "sent"
    assert attempts == 2
    assert message_id == int(answer["id"])
    assert answer["content"].startswith("/status web: node")
    assert _answers(fake_discord, asked) == [answer]


def _config(tmp_path: Path, fake: FakeDiscord, team: Members) -> Path:
    table = discord_table(
        fake,
        token_file(tmp_path, fake.token),
        status_channel=None,
        viewer=team.access["viewer"],
        admin=team.access["admin"],
    )
    count = relay_program("count", "relay_count.py", tmp_path / "runs", 400, relay="none")
    path = tmp_path / "dsup.toml"
    path.write_text(
        f'[supervisor]\nname = "asked"\nstate_dir = "state"\n\n{count}\n{table}', encoding="utf-8"
    )
    return path


def _pending_replies(config: Path) -> list[str]:
    """The files folders of the outbox's pending replies (read beside the running dsup)."""
    uri = f"file:{config.parent / 'state' / 'ledger.sqlite3'}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            rows = db.execute(
                "SELECT files FROM outbox WHERE kind = 'reply' AND status = 'pending' "
                "AND attempts > 0"
            )
            return [str(files) for (files,) in rows]
    except sqlite3.OperationalError:
        return []


def _kept(config: Path) -> list[str]:
    """The files kept for the outbox, as ``folder/name`` (a running dsup may be removing
    a folder while it is listed: one gone meanwhile holds nothing)."""
    root = config.parent / "state" / "outbox-files"
    if not root.exists():
        return []
    kept: list[str] = []
    for folder in os.listdir(root):
        with contextlib.suppress(FileNotFoundError):
            kept.extend(f"{folder}/{name}" for name in os.listdir(root / folder))
    return sorted(kept)


async def test_tail_answer_with_a_file_survives_a_restart_mid_outage_once_with_its_file(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """The answer to ``tail`` (a file: 400 lines do not fit a message) waits in the outbox
    with its file kept in the state directory; SIGTERM during the outage, start again,
    and it is posted once, file attached, and the file is removed."""
    team = members(fake_discord)
    config = _config(tmp_path, fake_discord, team)
    fake_discord.fail_route(*MESSAGES, status=503, times=None)
    async with dsup_process(config) as first:
        await fake_discord.wait_until(lambda: fake_discord.identify_count >= 1, timeout_seconds=20)
        log = config.parent / "state" / "logs" / "count-0.out.log"
        await wait_until(lambda: log.exists() and "line 399" in log.read_text(), seconds=20)
        asked = fake_discord.post_message(
            team.viewer, "general", "tail count:0 400", mention_bot=True
        )
        await wait_until(lambda: bool(_pending_replies(config)), seconds=20)
        (folder,) = _pending_replies(config)
        assert folder
        assert await stop_process(first, signal.SIGTERM) == 0
    assert _kept(config) == [f"{folder}/00-tail-count_0.txt"]
    assert _answers(fake_discord, asked) == []
    fake_discord.clear_faults()
    async with dsup_process(config) as second:
        (answer,) = await fake_discord.wait_until(
            lambda: _answers(fake_discord, asked), timeout_seconds=20
        )
        assert await stop_process(second, signal.SIGTERM) == 0
    assert _answers(fake_discord, asked) == [answer]
    assert answer["content"].startswith("/tail count:0 400: 400 lines")
    (attachment,) = answer["attachments"]
    assert attachment["filename"] == "tail-count_0.txt"
    lines = fake_discord.store.attachments[int(attachment["id"])].decode().splitlines()
    assert lines == [f"run 1 line {n}" for n in range(400)]
    assert _kept(config) == []


async def test_mention_answer_whose_file_cannot_be_kept_says_so(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """No room to keep the log file until Discord takes it: the answer still goes, saying
    why its file is missing, instead of being lost."""
    team = members(fake_discord)
    async with _node(tmp_path, fake_discord, team) as bridged:
        await wait_until(lambda: all(c.status().pid for c in bridged.node.fleet.processes()))
        hog = tmp_path / "state" / DIR_NAME / "earlier"
        hog.mkdir(parents=True)
        with (hog / "big").open("wb") as big:
            big.truncate(MAX_BYTES)  # sparse: it fills the bound, not the disk
        asked = fake_discord.post_message(team.viewer, "general", "logs web:0", mention_bot=True)
        (answer,) = await fake_discord.wait_until(
            lambda: _answers(fake_discord, asked), timeout_seconds=20
        )
    assert answer["attachments"] == []
    assert "Not attached (web-0.stdout.log): the node cannot keep it" in answer["content"]
    assert os.listdir(tmp_path / "state" / DIR_NAME) == ["earlier"]


async def test_mention_answer_reaches_the_channel_when_its_question_was_deleted(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """The asker deleted the mention during the outage: the answer is posted without the
    reply reference rather than refused for good."""
    team = members(fake_discord)
    async with _node(tmp_path, fake_discord, team):
        outage = fake_discord.fail_route(*MESSAGES, status=503, times=None)
        asked = fake_discord.post_message(team.viewer, "general", "status", mention_bot=True)
        await wait_until(lambda: outage.hits >= 1, seconds=20)
        fake_discord.delete_message("general", int(asked["id"]))
        fake_discord.clear_faults()
        (answer,) = await fake_discord.wait_until(
            lambda: fake_discord.bot_messages("general"), timeout_seconds=20
        )
    assert answer["content"].startswith("/status: node")
    assert "message_reference" not in answer
    assert len(fake_discord.bot_messages("general")) == 1


async def test_shutdown_confirmation_asked_before_a_restart_mid_outage_works_after_it(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """The button is stored with its row: posted by the next dsup, its click (a dynamic
    item, its custom id all it needs) stops that dsup."""
    team = members(fake_discord)
    config = _config(tmp_path, fake_discord, team)
    fake_discord.fail_route(*MESSAGES, status=503, times=None)
    async with dsup_process(config) as first:
        await fake_discord.wait_until(lambda: fake_discord.identify_count >= 1, timeout_seconds=20)
        asked = fake_discord.post_message(team.admin, "general", "shutdown", mention_bot=True)
        await wait_until(lambda: bool(_pending_replies(config)), seconds=20)
        assert await stop_process(first, signal.SIGTERM) == 0
    fake_discord.clear_faults()
    async with dsup_process(config) as second:
        (prompt,) = await fake_discord.wait_until(
            lambda: _answers(fake_discord, asked), timeout_seconds=20
        )
        assert prompt["content"].startswith("Stop every process and exit dsup?")
        click = fake_discord.click(team.admin, int(prompt["id"]), "dsup:shutdown:confirm")
        assert "is stopping every process" in ((await final_answer(click)).content or "")
        with anyio.fail_after(20):
            assert await second.wait() == 0
    assert _answers(fake_discord, asked) == [prompt]


async def test_mention_answer_too_long_for_a_row_goes_whole_as_a_file_never_cut(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """An outbox row holds a little less than a message (its marker): an answer that fits
    a message but not a row is attached whole; a shorter one stays in the message."""
    team = members(fake_discord)
    lines = [f"{i:02d} " + "x" * 93 for i in range(20)]
    say = program("say", "relay_say.py", *lines)
    async with bridged_node(
        tmp_path, fake_discord, say, status_channel=None, viewer=team.access["viewer"]
    ):
        log = tmp_path / "state" / "logs" / "say-0.out.log"
        await wait_until(lambda: log.exists() and lines[-1] in log.read_text())
        long = fake_discord.post_message(team.viewer, "general", "tail say:0", mention_bot=True)
        (whole,) = await fake_discord.wait_until(
            lambda: _answers(fake_discord, long), timeout_seconds=20
        )
        short = fake_discord.post_message(team.viewer, "general", "tail say:0 17", mention_bot=True)
        (inline,) = await fake_discord.wait_until(
            lambda: _answers(fake_discord, short), timeout_seconds=20
        )
    text = "/tail say:0: 20 lines\n```\n" + "\n".join(lines) + "\n```"
    assert MAX_CONTENT_CHARS < len(text) <= MESSAGE_LIMIT
    assert _shown(whole) == "/tail say:0: 20 lines\nthe whole answer is attached (answer.txt)"
    (attachment,) = whole["attachments"]
    assert attachment["filename"] == "answer.txt"
    assert fake_discord.store.attachments[int(attachment["id"])].decode() == text
    assert _shown(inline) == "/tail say:0 17: 17 lines\n```\n" + "\n".join(lines[3:]) + "\n```"
    assert inline["attachments"] == []


async def test_mention_answer_through_a_gateway_drop_and_a_429_arrives_once(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """A mention made while the gateway is down comes with the RESUME; its answer meets
    a 429 and still arrives once."""
    team = members(fake_discord)
    async with _node(tmp_path, fake_discord, team) as bridged:
        node = bridged.node
        await wait_until(lambda: all(c.status().pid for c in node.fleet.processes()))
        resumes = fake_discord.resume_count
        limited = fake_discord.fail_route(*MESSAGES, status=429, times=1, retry_after=0.5)
        async with fake_discord.gateway_outage():
            asked = fake_discord.post_message(
                team.viewer, "general", "status web", mention_bot=True
            )
        (answer,) = await fake_discord.wait_until(
            lambda: _answers(fake_discord, asked), timeout_seconds=30
        )
        assert fake_discord.resume_count > resumes
        assert limited.hits == 1
        assert _shown(answer).startswith("/status web")
        assert answer["mentions"] == []
    assert [status for status, _, _ in _replies(node.ledger.path)] == ["sent"]
    assert len(_answers(fake_discord, asked)) == 1


async def test_mention_delivered_again_while_its_command_runs_runs_it_once(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """A resumed session replayed the mention while its restart was still stopping the
    process: only finished answers were looked for, so the restart ran twice."""
    team = members(fake_discord)
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    release = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # stops wait for its bytes
    held = program("held", "mention_held_stop.py", str(fifo), stop_timeout_seconds=30.0)
    log = tmp_path / "state" / "logs" / "held-0.out.log"
    try:
        async with bridged_node(
            tmp_path,
            fake_discord,
            held,
            status_channel=None,
            viewer=team.access["viewer"],
            operator=team.access["operator"],
        ) as bridged:
            node = bridged.node
            await wait_until(lambda: log.exists() and "ready" in log.read_text())
            asked = fake_discord.post_message(
                team.operator, "general", "restart held:0", mention_bot=True
            )
            await wait_until(lambda: "stopping" in log.read_text(), seconds=20)
            resumes = fake_discord.resume_count
            async with fake_discord.gateway_outage():
                fake_discord.replay_message("general", int(asked["id"]))
            await fake_discord.wait_until(
                lambda: fake_discord.resume_count > resumes, timeout_seconds=20
            )
            # Handled after the copy was: by its answer, the copy's command was asked too.
            probe = fake_discord.post_message(team.viewer, "general", "status", mention_bot=True)
            await fake_discord.wait_until(lambda: _answers(fake_discord, probe), timeout_seconds=20)
            os.write(release, b"x" * 4)  # this stop, the next restart's, the last one's
            (answer,) = await fake_discord.wait_until(
                lambda: _answers(fake_discord, asked), timeout_seconds=20
            )
            # A second restart goes behind a copy's in the process's queue, and its
            # answer behind the copy's answer in the channel.
            again = fake_discord.post_message(
                team.operator, "general", "restart held:0", mention_bot=True
            )
            await fake_discord.wait_until(lambda: _answers(fake_discord, again), timeout_seconds=20)
            restarts = [r for r in node.ledger.audit_rows(50) if r.command == "restart"]
    finally:
        os.close(release)
    assert _shown(answer).startswith("/restart held:0: 1 process, 1 ok")
    assert _answers(fake_discord, asked) == [answer]
    assert len(restarts) == 2


class _Syncs:
    """Every ``fsync`` of the outbox's files (a spy: the real one runs), and whether a
    row of the ledger named their folder at that moment (read beside the node)."""

    def __init__(self, state: Path) -> None:
        self.root = state / DIR_NAME
        self.ledger = state / "ledger.sqlite3"
        self.seen: list[tuple[str, int, int]] = []  # path, size, rows naming its folder
        self._fsync = os.fsync

    def __call__(self, fd: int) -> None:
        self._fsync(fd)
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.startswith(str(self.root)) or path == str(self.root.parent):
            self.seen.append((path, os.fstat(fd).st_size, self._naming(path)))

    def _naming(self, path: str) -> int:
        folder = os.path.relpath(path, self.root).split("/")[0]  # ".." for the state dir
        uri = f"file:{self.ledger}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            ((count,),) = db.execute("SELECT count(*) FROM outbox WHERE files = ?", (folder,))
        return int(count)


async def test_mention_answer_file_is_on_disk_before_its_row_names_it(
    tmp_path: Path, fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file of an answer was not synced before its row committed: a power loss
    could leave a pending row naming an empty file."""
    team = members(fake_discord)
    syncs = _Syncs(tmp_path / "state")
    monkeypatch.setattr(os, "fsync", syncs)
    async with _node(tmp_path, fake_discord, team) as bridged:
        await wait_until(lambda: all(c.status().pid for c in bridged.node.fleet.processes()))
        fake_discord.fail_route(*MESSAGES, status=503, times=None)
        asked = fake_discord.post_message(team.viewer, "general", "logs web:0", mention_bot=True)
        await wait_until(lambda: bool(_pending_files(bridged.node.ledger)), seconds=20)
        (folder,) = _pending_files(bridged.node.ledger)
        (kept,) = os.listdir(syncs.root / folder)
        size = (syncs.root / folder / kept).stat().st_size
        fake_discord.clear_faults()
        (answer,) = await fake_discord.wait_until(
            lambda: _answers(fake_discord, asked), timeout_seconds=20
        )
    file, directory, root = (
        str(syncs.root / folder / kept),
        str(syncs.root / folder),
        str(syncs.root),
    )
    assert [(p, n) for p, _, n in syncs.seen] == [
        (file, 0),
        (directory, 0),
        (root, 0),
        (str(syncs.root.parent), 0),  # the first answer with files made the root
    ]
    assert syncs.seen[0][1] == size > 0
    (attachment,) = answer["attachments"]
    assert len(fake_discord.store.attachments[int(attachment["id"])]) == size


def _pending_files(ledger: Ledger) -> list[str]:
    rows = ledger.read("SELECT files FROM outbox WHERE status = 'pending' AND files != ''")
    return [str(row["files"]) for row in rows]
