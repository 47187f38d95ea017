"""Slash commands are registered only when their definition changed, or when asked.

Discord allows 200 command creations a day per guild: a dsup restarting in a loop must
not register its commands at every start.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import anyio

from supervisor.bridge.perform import VERBS as PROCESS_VERBS
from supervisor.bridge.tasks import TASK_VERBS
from supervisor.config.preflight import preflight
from supervisor.config.schema import load_config
from supervisor.state.command_sync import CommandSyncStore
from tests._control import ask, program, result
from tests.bridge._members import final_answer, last_audit, members, served
from tests.discord_fake.pytest_plugin import fake_discord

VERBS = (*PROCESS_VERBS, *TASK_VERBS)

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

WEB = program("web", "ctl_ticker.py", "0.05")


async def test_commands_sync_only_when_changed_or_missing(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    async with served(tmp_path, fake_discord, team, WEB):
        pass
    assert fake_discord.command_overwrites == 1
    assert sorted(fake_discord.command_creations) == sorted(VERBS)

    async with served(tmp_path, fake_discord, team, WEB) as bridged:
        # The same definition: nothing sent, and the commands still answer.
        assert fake_discord.command_overwrites == 1
        reply = await final_answer(fake_discord.invoke(team.viewer, "general", "status"))
        assert "web:0" in (reply.content or "")
        # What an older dsup registered differs from ours: the next start syncs.
        store = CommandSyncStore(bridged.node.ledger)
        await anyio.to_thread.run_sync(store.record, fake_discord.guild_id, "older")

    async with served(tmp_path, fake_discord, team, WEB):
        assert fake_discord.command_overwrites == 2
        fake_discord.store.commands.clear()  # someone removed them (a kick and re-invite)

    async with served(tmp_path, fake_discord, team, WEB):
        assert fake_discord.command_overwrites == 3
    # Bulk overwrites of the same commands created nothing new, but after the removal.
    assert len(fake_discord.command_creations) == 2 * len(VERBS)


async def test_ctl_discord_sync_registers_again_and_is_audited(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    async with served(tmp_path, fake_discord, team, WEB) as bridged:
        node = bridged.node
        answer = result(await ask(node.socket, "discord-sync"))
        assert answer["guild_id"] == fake_discord.guild_id
        assert sorted(answer["commands"]) == sorted(VERBS)  # type: ignore[call-overload]
        assert fake_discord.command_overwrites == 2
        assert len(fake_discord.command_creations) == len(VERBS)  # none created again
        row = await last_audit(node.ledger)
        assert (row.source, row.command, row.outcome) == ("local", "discord-sync", "ok")

        fake_discord.fail_route(
            "PUT", "/applications/{application_id}/guilds/{guild_id}/commands", status=403
        )
        refused = await ask(node.socket, "discord-sync")
        assert refused["ok"] is False
        error = refused["error"]
        assert isinstance(error, dict)
        assert error["type"] == "Unavailable"
        assert error["message"].startswith("discord-sync: Discord refused it (HTTP 403)")
        row = await last_audit(node.ledger)
        assert (row.command, row.outcome) == ("discord-sync", "refused")


async def test_ctl_discord_sync_without_a_bridge_says_so(tmp_path: Path) -> None:
    from tests._control import running_node, write_config

    async with running_node(write_config(tmp_path, WEB)) as node:
        response = await ask(node.socket, "discord-sync")
    assert response["ok"] is False
    error = response["error"]
    assert isinstance(error, dict)
    assert error["type"] == "Unavailable"
    assert "no Discord bridge runs in this node" in error["message"]


async def test_dsup_ctl_discord_sync_prints_what_it_registered(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    team = members(fake_discord)
    async with served(tmp_path, fake_discord, team, WEB):
        with anyio.fail_after(30):
            done = await anyio.run_process(
                [
                    sys.executable,
                    "-m",
                    "supervisor",
                    "ctl",
                    "-c",
                    str(tmp_path / "dsup.toml"),
                    "discord-sync",
                ],
                check=False,
            )
    assert done.returncode == 0, done.stderr
    said = done.stdout.decode()
    assert said.startswith(f"registered in guild {fake_discord.guild_id}: /status, /start")
    assert fake_discord.command_overwrites == 2


def test_dsup_check_warns_when_nobody_may_use_the_bot(tmp_path: Path) -> None:
    path = tmp_path / "dsup.toml"
    path.write_text(
        '[supervisor]\nname = "n"\n[programs.a]\ncommand = ["true"]\n'
        '[discord]\ntoken_env = "X"\nguild_id = 1\n',
        encoding="utf-8",
    )
    (warning,) = preflight(load_config(path))
    assert warning.startswith("discord.access: no role or user id is listed")
    path.write_text(path.read_text() + "[discord.access]\nviewer = [5]\n", encoding="utf-8")
    assert preflight(load_config(path)) == []
