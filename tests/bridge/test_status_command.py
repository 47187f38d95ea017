"""``/status`` through the fake Discord: the bridge's first command, end to end."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from tests._control import program
from tests._wait import wait_until
from tests.bridge._bridge import bridged_node
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

TICK = program("tick", "ctl_ticker.py", "0.05", numprocs=2)


async def test_status_answers_a_viewer_and_audits_it(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    alice = fake_discord.add_user("alice", roles=("watchers",))
    role = fake_discord.store.role_named("watchers")
    async with bridged_node(tmp_path, fake_discord, TICK, viewer=[role.id]) as bridged:
        node = bridged.node
        await wait_until(lambda: all(c.status().pid for c in node.fleet.processes()))
        record = fake_discord.invoke(alice, "general", "status")
        with anyio.fail_after(5):
            reply = await record.wait_reply(kind="followup", timeout_seconds=20)
        text = reply.content or ""
        assert "tick:0" in text
        assert "tick:1" in text
        assert "RUNNING" in text or "STARTING" in text
        rows = await anyio.to_thread.run_sync(lambda: node.ledger.audit_rows(5))
        assert (rows[0].source, rows[0].command, rows[0].outcome) == ("discord", "status", "ok")
        assert "alice" in rows[0].actor


async def test_status_refuses_a_member_no_access_list_names(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    bob = fake_discord.add_user("bob")
    async with bridged_node(tmp_path, fake_discord, TICK, viewer=[1]) as bridged:
        record = fake_discord.invoke(bob, "general", "status")
        reply = await record.wait_reply()  # refused at once, privately
        assert reply.data["flags"] & 64
        text = reply.content or ""
        assert "viewer" in text
        assert "tick:0" not in text
        rows = await anyio.to_thread.run_sync(lambda: bridged.node.ledger.audit_rows(5))
        assert (rows[0].command, rows[0].outcome) == ("status", "refused")
