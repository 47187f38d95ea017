"""The real ``dsup run`` bridged to the fake: board, a command, ctl status, a clean exit."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import anyio
import pytest

from tests._control import program, write_config
from tests._wait import eventually
from tests.bridge._bridge import (
    STARTED_SECONDS,
    discord_table,
    dsup_process,
    node_config,
    stop_process,
    token_file,
)
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

pytestmark = pytest.mark.timeout(90)

TICK = program("tick", "ctl_ticker.py", "0.2", numprocs=2)


async def _ctl_status(config: Path) -> str:
    done = await anyio.run_process(
        [sys.executable, "-m", "supervisor", "ctl", "-c", str(config), "status"], check=False
    )
    return done.stdout.decode()


async def test_dsup_run_serves_discord_end_to_end(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    alice = fake_discord.add_user("alice", roles=("ops",))
    role = fake_discord.store.role_named("ops")
    config = write_config(
        tmp_path,
        TICK,
        discord_table(
            fake_discord, token_file(tmp_path, fake_discord.token), interval=0.5, operator=[role.id]
        ),
    )
    log = (tmp_path / "dsup.log").open("wb")
    async with await anyio.open_process(
        [sys.executable, "-m", "supervisor", "run", "--quiet", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    ) as dsup:
        try:
            # The board comes up and settles on two RUNNING processes.
            def board() -> str:
                mine = fake_discord.bot_messages("general")
                return str(mine[0]["embeds"][0]["description"]) if mine else ""

            await fake_discord.wait_until(
                lambda: board().count("RUNNING `tick:") == 2, timeout_seconds=30
            )
            # A slash command from an operator restarts a process, through dsup ctl's surface.
            before = board()
            record = fake_discord.invoke(alice, "general", "restart", name="tick:1")
            await record.wait_reply(kind="followup", timeout_seconds=20)
            await fake_discord.wait_until(
                lambda: board() != before and board().count("RUNNING `tick:") == 2,
                timeout_seconds=30,
            )

            # ctl status shows the bridge below the table.
            async def shows_bridge() -> bool:
                return "discord: connected as dsup-bot to dsup-test" in await _ctl_status(config)

            await eventually(shows_bridge, seconds=20)
            dsup.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                assert await dsup.wait() == 0
        finally:
            if dsup.returncode is None:
                dsup.kill()
                with anyio.move_on_after(10, shield=True):
                    await dsup.wait()
            log.close()
    console = (tmp_path / "dsup.log").read_text()
    assert "discord: connected as dsup-bot to dsup-test" in console
    assert "voice" not in console  # dsup has none: no warning about its libraries
    assert fake_discord.token not in console
    posts = [a for a in fake_discord.bot_actions("general") if a.interaction_id is None]
    assert [a.kind for a in posts].count("create") == 1  # one board, edited


async def test_dsup_run_with_a_rejected_token_keeps_the_fleet(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    secret = token_file(
        tmp_path, "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GaBcDe.abcdefghijklmnopqrstuvwxyz0123"
    )
    config = write_config(tmp_path, TICK, discord_table(fake_discord, secret))
    log = (tmp_path / "dsup.log").open("wb")
    async with await anyio.open_process(
        [sys.executable, "-m", "supervisor", "run", "--quiet", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    ) as dsup:
        try:

            async def stopped_with_fleet_running() -> bool:
                status = await _ctl_status(config)
                return "discord: stopped: Discord rejected the bot token" in status and (
                    status.count("RUNNING") == 2
                )

            await eventually(stopped_with_fleet_running, seconds=30)
            dsup.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                assert await dsup.wait() == 0
        finally:
            if dsup.returncode is None:
                dsup.kill()
                with anyio.move_on_after(10, shield=True):
                    await dsup.wait()
            log.close()
    console = (tmp_path / "dsup.log").read_text()
    assert "Discord rejected the bot token (401 Unauthorized)" in console
    assert secret.read_text().strip() not in console
    assert "Traceback" not in console


async def test_dsup_run_verbose_logs_dsups_debug_records_not_discords_traffic(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """--verbose set the root logger to DEBUG: discord.py and aiohttp logged every request
    and gateway event with its payload on stderr, relayed worker output among them. Only
    dsup's own loggers go to DEBUG now; the others keep INFO."""
    said = "a line only the relay carries 4821"
    say = program("say", "relay_say.py", said, relay="all")
    config = node_config(tmp_path, fake_discord, say, name="loud", channels={"log_channel": "ops"})
    async with dsup_process(config, "--verbose") as dsup:
        await fake_discord.wait_for_action(
            "ops",
            kind="create",
            predicate=lambda a: said in (a.content or ""),
            timeout_seconds=STARTED_SECONDS,
        )
        assert "RUNNING" in await _ctl_status(config)  # a control client: a debug record
        assert await stop_process(dsup, signal.SIGTERM) == 0
    records = (tmp_path / "dsup.err").read_text().splitlines()
    assert [r for r in records if said in r] == []
    debug = [r for r in records if " DEBUG " in r]
    assert all(" DEBUG supervisor." in r for r in debug), debug[:3]
    assert any(" DEBUG supervisor.control." in r for r in records)
    assert any(" INFO discord." in r for r in records)  # discord.py's own news stays
    assert fake_discord.token not in "\n".join(records)
