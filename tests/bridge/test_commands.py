"""The slash commands end to end: the fake Discord, the bridge, a real fleet and ledger.

Every command at every access level: refused ones answer privately at once, name the
level needed, leave an audit row and change nothing; allowed ones are deferred and
say what happened to each process, with the audit row ``dsup ctl`` would leave.
"""

from __future__ import annotations

import gzip
from typing import TYPE_CHECKING

import anyio
import pytest

from supervisor.bridge.perform import VERBS
from supervisor.bridge.tasks import TASK_VERBS
from supervisor.commands.access import AccessLevel, Actor
from tests._control import program
from tests._wait import wait_until
from tests.bridge._members import attached, final_answer, is_private, last_audit, members, served
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from tests._control import Node
    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

WEB = program("web", "ctl_ticker.py", "0.05", numprocs=2)
LINES = program("lines", "out_lines.py", "2000", restart="never", start_seconds=0)
LEVELS = (AccessLevel.NONE, AccessLevel.VIEWER, AccessLevel.OPERATOR, AccessLevel.ADMIN)
# Each command (shutdown has its own test) with its options and required level.
CASES: list[tuple[str, dict[str, object], AccessLevel]] = [
    ("status", {}, AccessLevel.VIEWER),
    ("tail", {"name": "web:0", "lines": 3}, AccessLevel.VIEWER),
    ("logs", {"name": "web:0"}, AccessLevel.VIEWER),
    ("start", {"name": "web"}, AccessLevel.OPERATOR),
    ("stop", {"name": "web:1"}, AccessLevel.OPERATOR),
    ("restart", {"name": "web:1"}, AccessLevel.OPERATOR),
    ("signal", {"name": "web", "signal": "USR1"}, AccessLevel.OPERATOR),
    ("reload", {}, AccessLevel.ADMIN),
]


async def _exited(node: Node) -> None:
    await wait_until(
        lambda: all(c.status().state.value == "EXITED" for c in node.fleet.processes())
    )


def _pids(node: Node) -> dict[str, int | None]:
    return {c.name: c.status().pid for c in node.fleet.processes()}


async def _running(node: Node) -> None:
    await wait_until(
        lambda: all(c.status().state.value == "RUNNING" for c in node.fleet.processes())
    )


async def test_every_command_at_every_level(tmp_path: Path, fake_discord: FakeDiscord) -> None:
    team = members(fake_discord)
    async with served(tmp_path, fake_discord, team, WEB) as bridged:
        node = bridged.node
        await _running(node)
        registered = {c["name"] for c in fake_discord.store.commands[fake_discord.guild_id]}
        assert registered == {*VERBS, *TASK_VERBS}  # tasks: test_tasks_discord
        for command, options, needed in CASES:
            for level in LEVELS:
                before = _pids(node)
                user = team.at(level)
                record = fake_discord.invoke(user, "general", command, **options)
                reply = await final_answer(record)
                row = await last_audit(node.ledger)
                audited = "tail" if command == "logs" else command
                assert (row.source, row.command) == ("discord", audited)
                assert row.actor == f"{user.name} ({user.id})"
                text = reply.content or ""
                if level < needed:
                    assert record.replies[0].type == 4, (command, level)  # at once, no defer
                    assert is_private(reply)
                    assert f"needs {needed.name.lower()} access" in text
                    assert row.outcome == "refused"
                    assert _pids(node) == before, (command, level)
                else:
                    assert record.replies[0].type == 5, (command, level)  # deferred
                    assert row.outcome == "ok", (command, level, row.detail)
                    assert text.startswith(f"/{command}"), text
                    await node.service.start(Actor.local(), "all")  # after the stop
                await _running(node)


async def test_restart_says_what_happened_to_each_process(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    async with served(tmp_path, fake_discord, team, WEB) as bridged:
        await _running(bridged.node)
        before = _pids(bridged.node)
        reply = await final_answer(
            fake_discord.invoke(team.operator, "general", "restart", name="web")
        )
        after = _pids(bridged.node)
        text = reply.content or ""
        assert text.startswith("/restart web: 2 processes, 2 ok\n```")
        for name in ("web:0", "web:1"):
            assert after[name] != before[name]
            assert f"{name}: ok, RUNNING (pid {after[name]})" in text
        assert not is_private(reply)  # the team sees what was done

        unknown = await final_answer(
            fake_discord.invoke(team.operator, "general", "stop", name="nope")
        )
        assert "no program or process matches 'nope'" in (unknown.content or "")
        assert (await last_audit(bridged.node.ledger)).outcome == "failed"  # as for ctl


async def test_tail_too_long_for_a_message_goes_whole_as_a_file(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    async with served(tmp_path, fake_discord, team, LINES) as bridged:
        await _exited(bridged.node)
        reply = await final_answer(
            fake_discord.invoke(team.viewer, "general", "tail", name="lines", lines=300)
        )
        text = reply.content or ""
        assert len(text) <= 2000
        assert "the whole answer is attached (tail-lines_0.txt)" in text
        lines = attached(fake_discord, reply)["tail-lines_0.txt"].decode().splitlines()
        assert len(lines) == 300
        assert lines[0].startswith("line 1700 ")
        assert lines[-1].startswith("line 1999 ")


async def test_logs_sends_the_file_whole_gzipped_or_its_newest_part(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    async with served(tmp_path, fake_discord, team, LINES) as bridged:
        await _exited(bridged.node)
        log = bridged.node.state.log_dir / "lines-0.out.log"
        content = log.read_bytes()
        whole = await final_answer(
            fake_discord.invoke(team.viewer, "general", "logs", name="lines")
        )
        assert attached(fake_discord, whole) == {"lines-0.stdout.log": content}
        assert "lines:0: whole" in (whole.content or "")

        fake_discord.interactions.attachment_size_limit = len(content) // 2  # text gzips well
        zipped = await final_answer(
            fake_discord.invoke(team.viewer, "general", "logs", name="lines")
        )
        ((name, data),) = attached(fake_discord, zipped).items()
        assert name == "lines-0.stdout.log.gz"
        assert gzip.decompress(data) == content
        assert "lines:0: gzip" in (zipped.content or "")

        fake_discord.interactions.attachment_size_limit = 400
        part = await final_answer(fake_discord.invoke(team.viewer, "general", "logs", name="lines"))
        ((name, data),) = attached(fake_discord, part).items()
        assert len(data) <= 400
        newest = gzip.decompress(data)
        assert content.endswith(newest)
        assert newest.startswith(b"line ")
        assert "lines:0: newest " in (part.content or "")


async def test_name_autocompletes_programs_processes_globs_and_all(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    web2 = program("webhook", "ctl_ticker.py", "0.05")
    async with served(tmp_path, fake_discord, team, WEB, web2):
        record = fake_discord.autocomplete(team.viewer, "general", "restart", "name", name="web")
        reply = await record.wait_reply()
        assert reply.type == 8
        values = [c["value"] for c in reply.choices]
        assert values[:5] == ["web", "web*", "webhook", "web:0", "web:1"]
        assert "webhook" in values
        empty = fake_discord.autocomplete(team.viewer, "general", "status", "name", name="")
        assert [c["value"] for c in (await empty.wait_reply()).choices][:3] == [
            "all",
            "web",
            "webhook",
        ]
        hidden = fake_discord.autocomplete(team.nobody, "general", "status", "name", name="")
        assert (await hidden.wait_reply()).choices == []


@pytest.mark.parametrize("level", [AccessLevel.OPERATOR, AccessLevel.ADMIN])
async def test_shutdown_asks_an_admin_to_confirm_with_a_button(
    tmp_path: Path, fake_discord: FakeDiscord, level: AccessLevel
) -> None:
    team = members(fake_discord)
    async with served(tmp_path, fake_discord, team, WEB) as bridged:
        node = bridged.node
        asked = fake_discord.invoke(team.at(level), "general", "shutdown")
        prompt = await asked.wait_reply()
        assert is_private(prompt)
        if level < AccessLevel.ADMIN:
            assert "needs admin access" in (prompt.content or "")
            assert (await last_audit(node.ledger)).outcome == "refused"
            return
        assert prompt.message is not None
        rows = await anyio.to_thread.run_sync(lambda: node.ledger.audit_rows(20))
        assert all(r.command != "shutdown" for r in rows)  # nothing until confirmed
        click = fake_discord.click(team.admin, int(prompt.message["id"]), "dsup:shutdown:confirm")
        done = await final_answer(click)
        assert "is stopping every process and exiting" in (done.content or "")
        with anyio.fail_after(5):
            await node.fleet.wait_shutdown_requested()
        row = await last_audit(node.ledger)
        assert (row.command, row.outcome) == ("shutdown", "ok")


@pytest.mark.slow  # discord.py waits 5 s before a new IDENTIFY
async def test_a_command_survives_a_gateway_drop_and_a_refused_resume(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """The answer goes over REST with the interaction's token: a new gateway session
    (even a new IDENTIFY after a refused RESUME) neither loses nor repeats it."""
    team = members(fake_discord)
    slow = program("slow", "ctl_ticker.py", "0.05", "--ignore-term", stop_timeout_seconds=1.5)
    async with served(tmp_path, fake_discord, team, slow) as bridged:
        node = bridged.node
        await _running(node)
        stopping = fake_discord.invoke(team.operator, "general", "stop", name="slow")
        assert (await stopping.wait_reply()).type == 5
        await fake_discord.drop_gateway()  # resumed
        stopped = await stopping.wait_reply(kind="followup", timeout_seconds=20)
        assert "slow:0: ok, STOPPED" in (stopped.content or "")
        await wait_until(lambda: fake_discord.resume_count == 1)

        starting = fake_discord.invoke(team.operator, "general", "start", name="slow")
        assert (await starting.wait_reply()).type == 5
        fake_discord.refuse_resume = True
        await fake_discord.drop_gateway()  # a new session: discord.py waits 5 s to IDENTIFY
        started = await starting.wait_reply(kind="followup", timeout_seconds=20)
        assert "slow:0: ok, RUNNING" in (started.content or "")
        await wait_until(lambda: fake_discord.identify_count == 2, seconds=20)

        after = await final_answer(fake_discord.invoke(team.viewer, "general", "status"))
        assert "slow:0" in (after.content or "")
        rows = await anyio.to_thread.run_sync(lambda: node.ledger.audit_rows(10))
        assert [(r.command, r.outcome) for r in rows if r.source == "discord"] == [
            ("status", "ok"),
            ("start", "ok"),
            ("stop", "ok"),
        ]
        assert len(stopping.replies) == len(starting.replies) == 2  # one defer, one answer
