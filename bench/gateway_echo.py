"""What the gateway's echo of one message dsup posts costs dsup's process.

With the guild messages intent, Discord sends back every message the bot posts
(MESSAGE_CREATE): in a relayed flood, one a second. This serves the project's fake
Discord in this process and runs dsup's ``BridgeClient`` (no commands, no board) in a
subprocess per source tree given, all connected at once; the fake then posts, as the
bot, ``--echoes`` messages shaped like relayed output (about 2 KB) each round, one every
``--pace-ms``, between two direct messages from a member that the clients time with
their process CPU. Prints each tree's CPU per echo (median, min and max over
``--rounds``) and, per round, its ratio to the first tree's: on a shared machine the
rounds' spread is large, the ratio within a round much less.

    PYTHONPATH=. .venv/bin/python bench/gateway_echo.py [--echoes 2000] [--rounds 7]
        [--pace-ms 1] [--tree PATH ...]

``--tree`` (repeatable; default this checkout) is a dsup source tree, e.g. a worktree of
an older commit, to compare: ``--tree /tmp/old --tree .``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from tests.discord_fake import open_fake_discord

if TYPE_CHECKING:
    from anyio.abc import Process

    from tests.discord_fake import FakeDiscord, FakeUser

CLIENT = Path(__file__).with_name("_echo_client.py")
LINE = "scraper:0 | 2026-12-06 10:00:00 fetched https://example.com/page/123456 in 0.042 s"
RELAYED = (
    "**scraper:0**\n```\n"
    + "\n".join([LINE] * 21)
    + "\n```\n... 1,234 lines of scraper:0 omitted (see /logs scraper)"
)
KEEP_MESSAGES = 200  # the fake keeps every message; the bench forgets them as it goes


class _Client:
    """One client subprocess and the lines it prints."""

    def __init__(self, tree: Path, process: Process) -> None:
        self.tree = tree
        self.process = process
        self._pending = b""

    async def line(self) -> str:
        """The next line the client printed."""
        assert self.process.stdout is not None
        with anyio.fail_after(60):
            while b"\n" not in self._pending:
                self._pending += await self.process.stdout.receive()
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode()


async def _start(fake: FakeDiscord, tree: Path) -> _Client:
    argv = [sys.executable, str(CLIENT), fake.api_base, fake.gateway_url, fake.token]
    env = dict(os.environ, PYTHONPATH=str(tree))
    process = await anyio.open_process([*argv, str(fake.guild_id)], env=env, stderr=None)
    return _Client(tree, process)


async def _round(
    fake: FakeDiscord, member: FakeUser, clients: list[_Client], echoes: int, pace: float
) -> list[float]:
    """Post ``echoes`` messages as the bot; return each client's CPU per echo (µs)."""
    general = fake.channel("general")
    fake.post_direct_message(member, "start")
    for n in range(echoes):
        fake.post_message(fake.store.bot, general, RELAYED)
        if n % KEEP_MESSAGES == 0:
            general.messages.clear()
        await anyio.sleep(pace)
    fake.post_direct_message(member, "end")
    figures = []
    for client in clients:
        word, _, seconds = (await client.line()).partition(" ")
        if word != "cpu":
            raise RuntimeError(f"the client of {client.tree} printed {word!r}")
        figures.append(float(seconds) / echoes * 1e6)
    return figures


async def main() -> None:
    """Parse the arguments, run the rounds, print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--echoes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pace-ms", type=float, default=1.0)
    parser.add_argument("--tree", type=Path, action="append")
    args = parser.parse_args()
    trees = [t.resolve() for t in args.tree or [Path.cwd()]]
    rounds: list[list[float]] = []
    async with open_fake_discord() as fake:
        member = fake.add_user("member")
        clients = [await _start(fake, tree) for tree in trees]
        try:
            for client in clients:
                while await client.line() != "ready":
                    pass
            for n in range(args.rounds):
                rounds.append(await _round(fake, member, clients, args.echoes, args.pace_ms / 1e3))
                print(f"round {n + 1}: " + ", ".join(f"{f:.0f} µs" for f in rounds[-1]), flush=True)
        finally:
            fake.post_direct_message(member, "quit")
            with anyio.move_on_after(10, shield=True):
                for client in clients:
                    await client.process.wait()
    print(f"CPU of one echo, {args.echoes} echoes a round, {args.rounds} rounds:")
    for i, tree in enumerate(trees):
        mine = [r[i] for r in rounds]
        line = f"  {tree}: {statistics.median(mine):.0f} µs ({min(mine):.0f} to {max(mine):.0f})"
        if i:
            ratios = [r[i] / r[0] for r in rounds]
            line += f", {statistics.median(ratios):.3f} of the first ({min(ratios):.3f} to "
            line += f"{max(ratios):.3f})"
        print(line)


if __name__ == "__main__":
    anyio.run(main, backend="asyncio")
