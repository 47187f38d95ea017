"""``dsup check --online`` against the fake: what works, what does not, and what to do."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import anyio
import pytest

from tests._control import program, write_config
from tests.bridge._bridge import bridged_node, discord_table, token_file
from tests.discord_fake.pytest_plugin import fake_discord
from tests.test_docs import samples, shape

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

pytestmark = pytest.mark.timeout(60)

TICK = program("tick", "ctl_ticker.py", "0.2")
TOCKS = program("tock", "ctl_ticker.py", "0.2", numprocs=2)


async def _check_online(config: Path) -> tuple[int, str, str]:
    with anyio.fail_after(30):
        done = await anyio.run_process(
            [sys.executable, "-m", "supervisor", "check", "--online", str(config)], check=False
        )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def _config(tmp_path: Path, fake: FakeDiscord, token: str, **table: object) -> Path:
    return write_config(tmp_path, TICK, discord_table(fake, token_file(tmp_path, token), **table))  # type: ignore[arg-type]


async def test_check_online_all_well(tmp_path: Path, fake_discord: FakeDiscord) -> None:
    async with bridged_node(tmp_path, fake_discord, TICK):  # registers the slash commands
        pass
    code, out, err = await _check_online(_config(tmp_path, fake_discord, fake_discord.token))
    assert code == 0, out + err
    assert "bot: dsup-bot" in out
    assert "guild: dsup-test" in out
    assert "status_channel #general: ok (view, send, embed, attach, react, read history)" in out
    assert "/status" in out
    assert out.rstrip().endswith("all well")


async def test_check_online_names_each_problem_and_its_fix(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    fake_discord.add_channel("secret", bot_denied=True)
    config = _config(tmp_path, fake_discord, fake_discord.token, status_channel="secret")
    code, out, err = await _check_online(config)
    assert code == 1, out + err
    assert "status_channel #secret: cannot view, send" in out
    assert "allow them for the bot's role" in out
    assert "no slash commands in the guild" in out
    assert "applications.commands" in out
    assert fake_discord.bot_actions() == []  # it looked, it did not post


async def test_check_online_rejected_token(tmp_path: Path, fake_discord: FakeDiscord) -> None:
    code, out, err = await _check_online(_config(tmp_path, fake_discord, "wrong-token"))
    assert code == 1, out + err
    assert "Discord rejected the bot token (401)" in out
    assert "wrong-token" not in out + err


async def test_check_online_without_a_guild_id(tmp_path: Path, fake_discord: FakeDiscord) -> None:
    table = discord_table(fake_discord, token_file(tmp_path, fake_discord.token))
    table = table.replace(f"guild_id = {fake_discord.guild_id}\n", "")
    code, out, err = await _check_online(write_config(tmp_path, TICK, table))
    assert code == 1, out + err
    assert "discord.guild_id is not set" in out
    assert "Copy Server ID" in out


async def test_check_online_with_a_token_file_others_can_read(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    config = _config(tmp_path, fake_discord, fake_discord.token)
    (tmp_path / "token").chmod(0o644)
    code, out, err = await _check_online(config)
    assert code == 1, out + err
    assert "others can read it (mode 644); run: chmod 600" in out
    assert fake_discord.token not in out + err


async def test_check_online_prints_what_docs_config_md_shows(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """docs/config.md showed 9 slash commands where the bridge registers 11."""
    fake_discord.store.guild_name = "my-team"  # the docs' guild, before the bot sees it
    fake_discord.add_channel("ops")
    fake_discord.add_channel("audit", bot_denied=True)
    async with bridged_node(tmp_path, fake_discord, TICK):  # registers the slash commands
        pass
    table = discord_table(
        fake_discord,
        token_file(tmp_path, fake_discord.token),
        status_channel="ops",
        channels={"audit_channel": "audit"},
    )
    config = tmp_path / "dsup.toml"
    config.write_text(
        f'[supervisor]\nname = "node-a"\nstate_dir = "state"\n\n{TICK}\n{TOCKS}\n{table}',
        encoding="utf-8",
    )
    with anyio.fail_after(30):
        done = await anyio.run_process(
            [sys.executable, "-m", "supervisor", "check", "--online", "dsup.toml"],
            check=False,
            cwd=tmp_path,
        )
    printed = done.stdout.decode().splitlines()
    (sample,) = [lines for name, lines in samples().items() if name == "config.md:check-online"]
    assert [shape(line) for line in sample] == [shape(line) for line in printed], "\n".join(printed)
