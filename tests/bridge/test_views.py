"""The program menu and the process buttons, across a dsup restart, at each access level.

The menu message is posted by one dsup; a new dsup (new client, same ledger, same
fake) must understand clicks on it: the components carry their target in their
custom_id and are registered again at every start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from supervisor.bridge.views import board_view
from tests._control import program
from tests._wait import wait_until
from tests.bridge._members import final_answer, is_private, last_audit, members, served
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    import discord

    from tests._control import Node
    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

WEB = program("web", "ctl_ticker.py", "0.05", numprocs=2)
SOLO = program("solo", "ctl_ticker.py", "0.05")


async def _running(node: Node) -> None:
    await wait_until(
        lambda: all(c.status().state.value == "RUNNING" for c in node.fleet.processes())
    )


async def test_menu_and_buttons_work_after_dsup_restarts(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    async with served(tmp_path, fake_discord, team, WEB, SOLO):
        # The board carries the menu of programs.
        board = await fake_discord.wait_for_action(
            "general",
            kind="create",
            predicate=lambda a: bool(a.message and a.message["components"]),
        )
        assert board.message is not None
        (row,) = board.message["components"]
        (menu,) = row["components"]
        assert menu["custom_id"] == "dsup:programs:0"
        assert [o["value"] for o in menu["options"]] == ["web", "solo"]
        board_id = int(board.message["id"])

    async with served(tmp_path, fake_discord, team, WEB, SOLO) as second:
        node = second.node
        await _running(node)
        # A viewer may look at a program's processes...
        pick = fake_discord.click(team.viewer, board_id, "dsup:programs:0", values=["web"])
        panel = await final_answer(pick)
        assert is_private(panel)
        assert panel.message is not None
        text = panel.content or ""
        assert "web:0" in text
        assert "web:1" in text
        assert "solo" not in text
        ids = {c["custom_id"] for row in panel.message["components"] for c in row["components"]}
        assert {"dsup:restart:web", "dsup:restart:web:0", "dsup:logs:web:1"} <= ids
        # ...but not act on them: refused privately, audited, nothing changed.
        before = node.fleet.resolve("web:0")[0].status().pid
        refused = await final_answer(
            fake_discord.click(team.viewer, int(panel.message["id"]), "dsup:restart:web:0")
        )
        assert is_private(refused)
        assert "restart needs operator access" in (refused.content or "")
        assert (await last_audit(node.ledger)).outcome == "refused"
        assert node.fleet.resolve("web:0")[0].status().pid == before

        # An operator picks the program and restarts one process with its button.
        pick = fake_discord.click(team.operator, board_id, "dsup:programs:0", values=["web"])
        panel = await final_answer(pick)
        assert panel.message is not None
        done = await final_answer(
            fake_discord.click(team.operator, int(panel.message["id"]), "dsup:restart:web:0")
        )
        assert is_private(done)
        after = node.fleet.resolve("web:0")[0].status().pid
        assert after != before
        assert f"web:0: ok, RUNNING (pid {after})" in (done.content or "")
        row = await last_audit(node.ledger)
        assert (row.source, row.command, row.target, row.outcome) == (
            "discord",
            "restart",
            "web:0",
            "ok",
        )
        assert row.actor == f"otto ({team.operator.id})"


async def test_tail_button_and_a_program_gone_since_the_board(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    async with served(tmp_path, fake_discord, team, SOLO) as bridged:
        client = bridged.bridge.client
        assert client is not None
        channel = client.get_channel(fake_discord.channel("general").id)
        board: discord.Message = await channel.send("b", view=board_view(["solo", "gone"]))  # type: ignore[union-attr]
        await wait_until(lambda: (bridged.node.state.log_dir / "solo-0.out.log").exists())
        pick = fake_discord.click(team.viewer, board.id, "dsup:programs:0", values=["solo"])
        panel = await final_answer(pick)
        assert panel.message is not None
        with anyio.fail_after(10):
            while True:  # the log is flushed in the background
                tail = await final_answer(
                    fake_discord.click(team.viewer, int(panel.message["id"]), "dsup:tail:solo")
                )
                # "ready" comes first, then a tick every 0.05 s: either shows the log
                # was read ("ready" alone scrolls out of the last lines within a second).
                if any(word in (tail.content or "") for word in ("ready", "tick")):
                    break
        assert (tail.content or "").startswith("/tail solo: ")
        gone = await final_answer(
            fake_discord.click(team.viewer, board.id, "dsup:programs:0", values=["gone"])
        )
        assert "no program or process matches 'gone'" in (gone.content or "")
