"""Status board benchmark: a real ``dsup run`` of 500 processes bridged to the Discord fake.

Prints:
  - board render time at 500 processes (in-process, mixed states, median of many),
  - the board's size in characters (Discord's embed description limit is 4,096),
  - edits while idle: bot actions counted over an idle window, and that count scaled
    to an hour (the window and the interval are printed with it),
  - edits during a restart storm of all 500 processes (``dsup ctl restart``), with the
    storm's length and the most edits the interval allows in it,
  - the time from a state change (``dsup ctl stop``, after a quiet spell longer than
    the interval) to the board showing it: its first sign (STOPPING, at once) and the
    final state (STOPPED, held back by the pace of one edit per interval).

The fake runs in this process on 127.0.0.1; dsup is a subprocess.
Run: PYTHONPATH=. .venv/bin/python bench/board.py [--count 500] [--interval 2] [--idle 60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from _dsup_driver import SLEEP, program_table, quiet_dsup, write_config

from supervisor.bridge.board_text import render_board
from supervisor.commands.health import BridgeHealth
from supervisor.events import ProcessState
from supervisor.process.status import ProcessStatus
from tests.bridge._bridge import discord_table, token_file
from tests.discord_fake import FakeDiscord, open_fake_discord

DSUP = [sys.executable, "-m", "supervisor"]


def _statuses(count: int) -> list[ProcessStatus]:
    """A fleet of ``count`` processes in four programs; one in 25 is unhealthy."""
    now = time.time()
    states = [ProcessState.RUNNING] * 22 + [
        ProcessState.FATAL,
        ProcessState.BACKOFF,
        ProcessState.STOPPED,
    ]
    return [
        ProcessStatus(
            process=f"worker{i % 4}:{i}",
            program=f"worker{i % 4}",
            index=i,
            state=states[i % len(states)],
            pid=10_000 + i,
            run_id=f"r{i}",
            started_at=now - i,
            state_since=now - i,
            restarts=i % 3,
            last_exit_code=1 if i % 5 == 0 else None,
            last_exit_signal=None,
            last_error="",
        )
        for i in range(count)
    ]


def render_time(count: int) -> tuple[float, int]:
    """Median seconds to render the board of ``count`` processes, and its length."""
    statuses = _statuses(count)
    health = BridgeHealth(state="connected", since=time.time(), user="dsup-bot", guild="g")
    times = []
    for _ in range(200):
        began = time.perf_counter()
        text = render_board(statuses, node="bench", health=health)
        times.append(time.perf_counter() - began)
    return statistics.median(times), len(text.body)


def _config(directory: Path, fake: FakeDiscord, count: int, interval: float) -> Path:
    sleepers = program_table("sleeper", SLEEP, numprocs=count, start_seconds=1.0, stop_timeout=3)
    token = token_file(directory, fake.token)
    return write_config(directory, sleepers, discord_table(fake, token, interval=interval))


def _board(fake: FakeDiscord) -> str:
    mine = [m for m in fake.bot_messages("general") if m["embeds"]]
    return str(mine[0]["embeds"][0]["description"]) if mine else ""


def _edits(fake: FakeDiscord) -> int:
    return sum(1 for a in fake.bot_actions("general") if a.kind == "edit")


async def _ctl(config: Path, *args: str) -> None:
    done = await anyio.run_process([*DSUP, "ctl", "-c", str(config), *args], check=False)
    if done.returncode:
        failed = [line for line in done.stdout.decode().splitlines() if "ok" not in line]
        print(f"dsup ctl {' '.join(args)}: exit {done.returncode}: {failed[:3]}")


async def live(count: int, interval: float, idle: float) -> None:
    """The measures against a running dsup."""
    settled = f"sleeper` x {count} RUNNING"
    with tempfile.TemporaryDirectory() as tmp:
        async with open_fake_discord() as fake:
            config = _config(Path(tmp), fake, count, interval)
            async with quiet_dsup(config):
                await fake.wait_until(lambda: settled in _board(fake), timeout_seconds=120)
                print(f"board posted and settled: {len(_board(fake))} characters")

                # A settle margin of two intervals, then the idle window.
                await anyio.sleep(2 * interval)
                before = len(fake.bot_actions())
                await anyio.sleep(idle)
                actions = len(fake.bot_actions()) - before
                print(
                    f"idle: {actions} bot actions in {idle:.0f} s at an interval of "
                    f"{interval:g} s ({idle / interval:.0f} chances to edit) = "
                    f"{actions * 3600 / idle:.0f} edits per idle hour"
                )

                edits = _edits(fake)
                began = time.monotonic()
                await _ctl(config, "restart", "sleeper")
                await fake.wait_until(
                    lambda: settled in _board(fake) and "STARTING" not in _board(fake),
                    timeout_seconds=120,
                )
                storm = time.monotonic() - began
                made = _edits(fake) - edits
                print(
                    f"restart storm of {count} processes: {made} edits in {storm:.1f} s "
                    f"(the interval allows at most {storm / interval + 1:.0f})"
                )

                first, final = [], []
                for i in range(5):
                    name = f"sleeper:{i * 7}"
                    # A quiet spell longer than the interval: the change is not held
                    # back by the pace of edits, only by how soon the board notices it.
                    await anyio.sleep(interval + 0.5)
                    began = time.monotonic()
                    await _ctl(config, "stop", name)
                    await fake.wait_until(
                        lambda n=name: f"`{n}` STOP" in _board(fake),  # type: ignore[misc]
                        timeout_seconds=60,
                    )
                    first.append(time.monotonic() - began)
                    await fake.wait_until(
                        lambda n=name: f"`{n}` STOPPED" in _board(fake),  # type: ignore[misc]
                        timeout_seconds=60,
                    )
                    final.append(time.monotonic() - began)
                    await _ctl(config, "start", name)
                    await fake.wait_until(lambda: settled in _board(fake), timeout_seconds=60)
                print(
                    f"state change to board (dsup ctl stop, its start-up included): first "
                    f"sign (STOPPING) median {statistics.median(first):.2f} s, max "
                    f"{max(first):.2f} s; final state (STOPPED) median "
                    f"{statistics.median(final):.2f} s, max {max(final):.2f} s over "
                    f"{len(first)} stops (status_interval_seconds = {interval:g})"
                )


def main() -> None:
    """Parse arguments and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--idle", type=float, default=60.0)
    args = parser.parse_args()
    seconds, chars = render_time(args.count)
    print(
        f"render at {args.count} processes (1 in 25 unhealthy): {seconds * 1000:.2f} ms "
        f"median, {chars} characters (limit 4096)"
    )
    anyio.run(live, args.count, args.interval, args.idle, backend="asyncio")


if __name__ == "__main__":
    main()
