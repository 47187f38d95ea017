"""``make demo-discord``: dsup's example fleet bridged to the Discord fake, in one terminal.

No real Discord: the fake (``tests/discord_fake``) serves on 127.0.0.1, dsup runs the
example fleet with a ``[discord]`` table pointing at it, and this terminal is the
fake's console, acting as a member with the operator role. It prints the status board
each time the bot posts or edits it, and the answers to the commands you type.
Run from the repository root with ``PYTHONPATH=.`` (the Makefile does).
"""

from __future__ import annotations

import contextlib
import functools
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from supervisor import humanize
from tests.bridge._bridge import discord_table, token_file
from tests.discord_fake import open_fake_discord
from tests.discord_fake.__main__ import stdin_lines

if TYPE_CHECKING:
    from tests.discord_fake import FakeDiscord, FakeUser, InteractionRecord

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CONFIG = EXAMPLES / ".dsup-discord.toml"  # beside dsup.toml, so its relative paths hold
STATE = EXAMPLES / ".dsup-discord"
HELP = """\
You are 'you', a member with the operator role, typing in #general. Try:
  /status                  the state of every process
  /restart name=flaky      restart a program (watch the board change)
  /tail name=progress lines=5
  #general hello           post a message
Ctrl-D or Ctrl-C ends the demo (dsup stops its fleet first)."""
_TIMESTAMP = re.compile(r"<t:(\d+):R>")


def say(text: str) -> None:
    """Print to the terminal at once."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def readable(text: str) -> str:
    """Discord markdown as a terminal shows it: timestamps as "12s ago", no ** or `."""

    def ago(match: re.Match[str]) -> str:
        return f"{humanize.duration(time.time() - int(match[1]))} ago"

    return _TIMESTAMP.sub(ago, text).replace("**", "").replace("`", "")


def describe(message: dict[str, Any]) -> str:
    """A bot message for the terminal: its content and its embeds."""
    parts = [message.get("content") or ""]
    for embed in message.get("embeds") or []:
        parts += [f"[{embed.get('title', '')}]", embed.get("description") or ""]
    return readable("\n".join(p for p in parts if p))


def write_config(fake: FakeDiscord, operator_role: int) -> None:
    """The example config with a [discord] table for the fake, and its token file."""
    STATE.mkdir(exist_ok=True)
    token = token_file(STATE, fake.token)
    text = (EXAMPLES / "dsup.toml").read_text(encoding="utf-8")
    text = text.replace('state_dir = ".dsup"', 'state_dir = ".dsup-discord"')
    text += "\n" + discord_table(fake, token, interval=2, operator=[operator_role])
    CONFIG.write_text(text, encoding="utf-8")


def _more_actions(fake: FakeDiscord, seen: int) -> bool:
    return len(fake.bot_actions()) > seen


def _more_replies(record: InteractionRecord, seen: int) -> bool:
    return len(record.replies) > seen


async def show_board(fake: FakeDiscord) -> None:
    """Print the board each time the bot posts or edits a message in #general."""
    seen = 0
    while True:
        await fake.wait_until(functools.partial(_more_actions, fake, seen), timeout_seconds=1e9)
        for action in fake.bot_actions()[seen:]:
            if action.kind in ("create", "edit") and action.message and action.message["embeds"]:
                verb = "posted" if action.kind == "create" else "edited"
                say(f"\n--- the board was {verb} in #general ---\n{describe(action.message)}\n")
        seen = len(fake.bot_actions())


async def show_answers(record: InteractionRecord) -> None:
    """Print the bot's answers to one command as they come (for a minute at most)."""
    shown = 0
    with anyio.move_on_after(60):
        while True:
            await record.store.wait_until(
                functools.partial(_more_replies, record, shown), timeout_seconds=60
            )
            for reply in record.replies[shown:]:
                if reply.message and (reply.message.get("content") or reply.message["embeds"]):
                    say(f"--- the bot answered ---\n{describe(reply.message)}")
            shown = len(record.replies)


async def console(fake: FakeDiscord, you: FakeUser, tasks: anyio.abc.TaskGroup) -> None:
    """Act on each line typed, as the fake's console does."""
    async for raw in stdin_lines():
        line = raw.strip()
        try:
            if line.startswith("/"):
                name, *args = line[1:].split()
                options = dict(a.partition("=")[::2] for a in args)
                tasks.start_soon(show_answers, fake.invoke(you, "general", name, **options))
            elif line.startswith("#"):
                channel, _, content = line[1:].partition(" ")
                fake.post_message(you, channel, content)
            elif line:
                say(HELP)
        except (LookupError, ValueError) as exc:
            say(f"error: {exc}")


async def main() -> None:
    """Serve the fake, run dsup against it, and be the user until end of input."""
    async with open_fake_discord() as fake:
        you = fake.add_user("you", roles=("operator",))
        write_config(fake, fake.store.role_named("operator").id)
        log = (STATE / "dsup.log").open("wb")
        dsup = await anyio.open_process(
            [sys.executable, "-m", "supervisor", "run", "--quiet", str(CONFIG)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        say(f"dsup runs the example fleet (pid {dsup.pid}; its console: {STATE / 'dsup.log'})")
        say(HELP)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(show_board, fake)
                await console(fake, you, tasks)
                tasks.cancel_scope.cancel("end of input")
        finally:
            with contextlib.suppress(ProcessLookupError):
                dsup.send_signal(signal.SIGTERM)
            with anyio.move_on_after(30, shield=True):
                await dsup.wait()
            if dsup.returncode is None:
                dsup.kill()
                with anyio.move_on_after(5, shield=True):
                    await dsup.wait()
            log.close()
            say(f"dsup exited with status {dsup.returncode}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main, backend="asyncio")
