"""Serve the Discord fake by hand: ``python -m tests.discord_fake``.

It prints the API base, gateway URL and token to give the bot, then reads commands on
stdin, acting as a user called ``you`` (role ``operator``), and prints what the bot does:

    #general hello bot          post "hello bot" in #general
    /status program=ingest      run a slash command in #general (each value is converted
                                to the type the bot registered for that option)
    click <message id> <custom id>   click a button on a bot message
    drop                        drop the gateway connection (the bot should resume)

Ctrl-D (end of input) or Ctrl-C stops it at once. stdin is read with the event loop
(no blocking thread), so Ctrl-C never waits for the next line.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from typing import TYPE_CHECKING

import anyio

from tests.discord_fake.server import FakeDiscord, open_fake_discord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.discord_fake.models import FakeUser

logger = logging.getLogger(__name__)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def run_console_line(fake: FakeDiscord, user: FakeUser, line: str) -> None:
    """Act on one console line as ``user``.

    Raises:
        LookupError: An unknown channel, command, option or message.
        ValueError: A bad option value (:class:`~tests.discord_fake.options.OptionError`).
    """
    if line.startswith("#"):
        channel, _, content = line[1:].partition(" ")
        fake.post_message(user, channel, content)
    elif line.startswith("/"):
        name, *args = line[1:].split()
        options = dict(a.partition("=")[::2] for a in args)
        fake.invoke(user, "general", name, **options)
    elif line.startswith("click "):
        _, message_id, custom_id = line.split(maxsplit=2)
        fake.click(user, int(message_id), custom_id)
    elif line == "drop":
        _say(f"dropped {await fake.drop_gateway()} connection(s)")
    else:
        _say("commands: '#channel text', '/command opt=value', 'click <id> <custom_id>', 'drop'")


async def _report(fake: FakeDiscord) -> None:
    """Print each bot action as it happens."""
    seen = 0
    while True:
        await fake.wait_until(
            lambda n=seen: len(fake.bot_actions()) > n,  # type: ignore[misc]
            timeout_seconds=float("inf"),
        )
        for action in fake.bot_actions()[seen:]:
            channel = fake.store.channels[action.channel_id].name
            detail = action.content if action.message is not None else action.emoji or ""
            _say(f"bot {action.kind} #{channel} [{action.message_id}] {detail}")
        seen = len(fake.bot_actions())


async def stdin_lines() -> AsyncIterator[str]:
    """Yield stdin's lines until end of input, waiting for them on the event loop.

    A pipe or terminal is awaited with ``wait_readable`` (cancellable at once); a
    regular file never blocks, so it is read directly.
    """
    fd = sys.stdin.fileno()
    pending = b""
    while True:
        # A regular file: epoll refuses it (PermissionError), and reading it never blocks.
        with contextlib.suppress(PermissionError):
            await anyio.wait_readable(fd)
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")


async def _console(fake: FakeDiscord) -> None:
    user = fake.add_user("you", roles=("operator",))
    async for line in stdin_lines():
        if line.strip():
            try:
                await run_console_line(fake, user, line.strip())
            except (LookupError, ValueError) as exc:
                _say(f"error: {exc}")


async def main(argv: list[str] | None = None) -> None:
    """Parse arguments, serve the fake, run the console until stdin ends."""
    parser = argparse.ArgumentParser(prog="python -m tests.discord_fake", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default="fake-token")
    parser.add_argument("--channel", action="append", dest="channels", help="repeatable")
    args = parser.parse_args(argv)
    channels = tuple(args.channels or ("general", "ops"))
    logging.basicConfig(level=logging.INFO)
    async with open_fake_discord(
        host=args.host, port=args.port, token=args.token, channels=channels
    ) as fake:
        _say(f"API base:    {fake.api_base}")
        _say(f"gateway:     {fake.gateway_url}")
        _say(f"token:       {fake.token}")
        _say(f"guild id:    {fake.guild_id}")
        async with anyio.create_task_group() as tg:
            tg.start_soon(_report, fake)
            await _console(fake)
            tg.cancel_scope.cancel()


def run(argv: list[str] | None = None) -> int:
    """Run :func:`main`; return the exit status (130 after Ctrl-C, without a traceback)."""
    try:
        anyio.run(main, argv, backend="asyncio")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(run())
