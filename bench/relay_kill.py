"""What a SIGKILL of dsup costs the relay: output printed before it that never reaches Discord.

Runs a real ``dsup run`` with ``ticker`` (``relay = "all"``, 20 numbered lines a second)
against the project's fake Discord served by this process, kills it with SIGKILL a few
seconds in, starts it again on the same state directory and waits for the outbox to empty.
The lines the killed run wrote to its log file but that no message shows were held in
dsup's memory (not yet in the outbox) when it died. Rows already in the outbox are sent
after the restart, once (tests/bridge/test_relay_restart.py checks that). Prints figures;
asserts nothing.

    PYTHONPATH=. .venv/bin/python bench/relay_kill.py [--kills 5] [--rate 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from _dsup_driver import write_config

from tests.bridge._bridge import discord_table, dsup_process, token_file
from tests.discord_fake import FakeDiscord, open_fake_discord

if TYPE_CHECKING:
    from collections.abc import Callable


TICKER = Path(__file__).resolve().parent.parent / "tests" / "workers" / "relay_ticker.py"
DEADLINE = 60.0
_LINE = re.compile(r"run (\d+) line (\d+)")


async def _wait(check: Callable[[], object], what: str) -> None:
    """Poll ``check`` (files and another process's database: nothing to await)."""
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {DEADLINE:.0f} s for {what}")
        await anyio.sleep(0.05)


def _relayed(fake: FakeDiscord, run: int, since: int) -> set[int]:
    """Line numbers of ``run`` in the messages after the first ``since``."""
    found = set()
    for message in fake.bot_messages("ops")[since:]:
        for match in _LINE.finditer(str(message.get("content", ""))):
            if int(match[1]) == run:
                found.add(int(match[2]))
    return found


def _logged(state: Path, run: int) -> int:
    (log,) = state.rglob("ticker-0.out.log")
    return sum(1 for m in _LINE.finditer(log.read_text()) if int(m[1]) == run)


def _pending(state: Path) -> int:
    uri = f"file:{state / 'ledger.sqlite3'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        (count,) = db.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()
    return int(count)


async def kill_once(fake: FakeDiscord, rate: int, rng: random.Random) -> tuple[int, int]:
    """One kill: (lines the killed run logged, lines of them no message shows)."""
    with tempfile.TemporaryDirectory(prefix="dsup-relay-kill-") as tmp:
        directory = Path(tmp)
        ticker = [sys.executable, "-u", str(TICKER), str(directory / "runs"), str(rate)]
        config = write_config(
            directory,
            f'[programs.ticker]\ncommand = {json.dumps(ticker)}\nrelay = "all"\n',
            discord_table(
                fake,
                token_file(directory, fake.token),
                status_channel=None,
                channels={"log_channel": "ops"},
            ),
        )
        state = directory / "state"
        since = len(fake.bot_messages("ops"))
        async with dsup_process(config, reap_seconds=30) as first:
            await _wait(lambda: _relayed(fake, 1, since), "the first lines in Discord")
            await anyio.sleep(2.0 + 3.0 * rng.random())
            first.send_signal(signal.SIGKILL)
            with anyio.fail_after(30):
                await first.wait()
        logged = _logged(state, 1)
        async with dsup_process(config, reap_seconds=30) as second:
            await _wait(lambda: _relayed(fake, 2, since), "the restart's lines in Discord")
            await _wait(lambda: _pending(state) == 0, "the outbox to empty")
            second.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                await second.wait()
        shown = _relayed(fake, 1, since)
        return logged, len(set(range(logged)) - shown)


async def main(kills: int, rate: int) -> None:
    rng = random.Random(11)
    results = []
    async with open_fake_discord() as fake:
        for _ in range(kills):
            results.append(await kill_once(fake, rate, rng))
    lost = [missing for _, missing in results]
    print(f"ticker printing {rate} lines/s, relay = all; dsup killed with SIGKILL {kills} times")
    for logged, missing in results:
        print(f"  logged {logged} lines before the kill, {missing} never shown in Discord")
    print(
        f"lines lost per kill: median {statistics.median(lost):g}, max {max(lost)} "
        f"(= {max(lost) / rate:.2f} s of output at {rate} lines/s)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--rate", type=int, default=20, help="lines a second")
    args = parser.parse_args()
    anyio.run(main, args.kills, args.rate, backend="asyncio")
