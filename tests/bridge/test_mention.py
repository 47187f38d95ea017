"""Commands by mentioning the bot, for servers without slash commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from supervisor.bridge.mention import parse
from supervisor.bridge.perform import Ask
from tests._control import program
from tests._wait import wait_until
from tests.bridge._members import final_answer, last_audit, members, served
from tests.discord_fake.pytest_plugin import fake_discord
from tests.discord_fake.ratelimit import MESSAGES_ROUTE

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord, FakeUser

__all__ = ["fake_discord"]

WEB = program("web", "ctl_ticker.py", "0.05", numprocs=2)


def test_parse_reads_the_words_a_slash_command_takes() -> None:
    assert parse(["restart", "web"]) == Ask(verb="restart", target="web")
    assert parse(["Status"]) == Ask(verb="status")
    assert parse(["tail", "web:0", "5", "stderr"]) == Ask(
        verb="tail", target="web:0", lines=5, stream="stderr"
    )
    assert parse(["signal", "web", "HUP"]) == Ask(verb="signal", target="web", signal="HUP")
    assert parse(["/logs", "web"]) == Ask(verb="logs", target="web")
    for words, says in (
        ([], "I understand: status"),
        (["help"], "I understand: status"),
        (["dance"], "I don't know 'dance'"),
        (["stop"], "stop needs a name"),
        (["tail", "web", "lots"], "tail takes 1 to 1000 lines"),
        (["signal", "web"], "signal needs a name and a signal"),
        (["reload", "now"], "Too many words for reload"),
    ):
        got = parse(words)
        assert isinstance(got, str)
        assert says in got


async def _say(fake: FakeDiscord, user: FakeUser, text: str) -> str:
    since = len(fake.bot_actions())
    posted = fake.post_message(user, "general", text, mention_bot=True)
    reply = await fake.wait_for_action(
        "general",
        kind="create",
        since=since,
        predicate=lambda a: (
            a.message is not None
            and str((a.message.get("message_reference") or {}).get("message_id")) == posted["id"]
        ),
        timeout_seconds=20,
    )
    return reply.content or ""


async def test_mention_commands_have_the_same_access_and_audit(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    # Eight answers in one channel: at Discord's 5 per 5 s the last ones waited for the
    # window, a pace this test is not about.
    fake_discord.set_rate_limit(*MESSAGES_ROUTE, limit=5, per_seconds=1.0)
    async with served(tmp_path, fake_discord, team, WEB) as bridged:
        node = bridged.node
        await wait_until(lambda: all(c.status().pid for c in node.fleet.processes()))
        before = node.fleet.resolve("web:1")[0].status().pid

        refused = await _say(fake_discord, team.viewer, "restart web:1")
        assert "restart needs operator access; you have viewer access" in refused
        row = await last_audit(node.ledger)
        assert (row.source, row.command, row.outcome) == ("discord", "restart", "refused")
        assert node.fleet.resolve("web:1")[0].status().pid == before

        done = await _say(fake_discord, team.operator, "restart web:1")
        after = node.fleet.resolve("web:1")[0].status().pid
        assert done.startswith("/restart web:1: 1 process, 1 ok")
        assert f"web:1: ok, RUNNING (pid {after})" in done
        row = await last_audit(node.ledger)
        assert (row.actor, row.command, row.target, row.outcome) == (
            f"otto ({team.operator.id})",
            "restart",
            "web:1",
            "ok",
        )

        logs = await _say(fake_discord, team.viewer, "logs web:0")
        assert logs.startswith("/logs web:0: 1 attached")
        sent = fake_discord.bot_messages("general")[-1]
        assert [a["filename"] for a in sent["attachments"]] == ["web-0.stdout.log"]
        assert "I don't know 'dance'" in await _say(fake_discord, team.viewer, "dance")
        assert "web:0" in await _say(fake_discord, team.viewer, "status")
        nobody = await _say(fake_discord, team.nobody, "status")
        assert "status needs viewer access" in nobody

        # No mention, no command (and without the privileged intent, no text either).
        since = len(fake_discord.bot_actions())
        fake_discord.post_message(team.admin, "general", "restart web")
        await _say(fake_discord, team.viewer, "status")  # answered after the plain message
        replies = [a for a in fake_discord.bot_actions()[since:] if a.kind == "create"]
        assert len(replies) == 1


async def test_mention_shutdown_asks_to_confirm_with_a_button(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    async with served(tmp_path, fake_discord, team, WEB) as bridged:
        node = bridged.node
        refused = await _say(fake_discord, team.operator, "shutdown")
        assert "shutdown needs admin access" in refused
        assert (await last_audit(node.ledger)).outcome == "refused"

        since = len(fake_discord.bot_actions())
        asked = await _say(fake_discord, team.admin, "shutdown")
        assert asked.startswith("Stop every process and exit dsup?")
        prompt = next(
            a
            for a in fake_discord.bot_actions()[since:]
            if a.kind == "create" and (a.content or "").startswith("Stop every")
        )
        assert prompt.message_id is not None
        # A click checks access again: an operator's click is refused privately.
        click = fake_discord.click(team.operator, prompt.message_id, "dsup:shutdown:confirm")
        assert "needs admin access" in ((await final_answer(click)).content or "")
        click = fake_discord.click(team.admin, prompt.message_id, "dsup:shutdown:confirm")
        assert "is stopping every process" in ((await final_answer(click)).content or "")
        with anyio.fail_after(5):
            await node.fleet.wait_shutdown_requested()


async def test_direct_message_is_ignored_and_audited(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """dsup serves one guild: a DM, even from an admin, runs nothing; it is audited."""
    team = members(fake_discord)
    async with served(tmp_path, fake_discord, team, WEB) as bridged:
        node = bridged.node
        await wait_until(lambda: all(c.status().pid for c in node.fleet.processes()))
        before = [c.status().pid for c in node.fleet.processes()]
        fake_discord.post_direct_message(team.admin, "restart web")

        def audited() -> bool:
            rows = node.ledger.audit_rows(1)
            return bool(rows) and (rows[0].command, rows[0].outcome) == ("message", "refused")

        await wait_until(audited)
        row = await last_audit(node.ledger)
        assert "ignored: from a direct message" in row.detail
        assert row.actor.startswith("ada (")
        assert [c.status().pid for c in node.fleet.processes()] == before
