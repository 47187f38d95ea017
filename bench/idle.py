"""The CPU an idle node spends a second: its periodic wakes, with nothing to do.

Runs a real ``dsup run --json-logs --quiet`` with ``--processes`` sleeping processes
(``relay = "all"``), plain (no ``[discord]``) and bridged to the project's fake Discord
served by this process, ``--runs`` times each. Each run waits ``--settle`` seconds (the
start, the bridge's connection), then takes dsup's own CPU (all its threads, from
``/proc/PID/task/*/schedstat``) over ``--window`` seconds. Prints each run and the
median; asserts nothing about speed.

    PYTHONPATH=. .venv/bin/python bench/idle.py [--runs 4] [--processes 10]
        [--window 20] [--settle 6]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from _dsup_driver import write_config

from tests.bridge._bridge import discord_table, token_file
from tests.discord_fake import FakeDiscord, open_fake_discord

STOP_SECONDS = 30.0


def _cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` so far (a thread that just ended is skipped)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except OSError:
            continue
    return total / 1e9


async def idle_cpu(fake: FakeDiscord | None, args: argparse.Namespace) -> float:
    """One run: dsup's CPU a second over the window (seconds a second)."""
    with tempfile.TemporaryDirectory(prefix="dsup-idle-bench-") as tmp:
        directory = Path(tmp)
        tables = [
            f'[programs.sleeper]\ncommand = ["sleep", "3600"]\nnumprocs = {args.processes}\n'
            'relay = "all"\n'
        ]
        if fake is not None:
            token = token_file(directory, fake.token)
            tables.append(
                discord_table(fake, token, status_channel=None, channels={"log_channel": "ops"})
            )
        config = write_config(directory, *tables)
        with (directory / "dsup.err").open("wb") as errors:
            proc = await anyio.open_process(
                [sys.executable, "-m", "supervisor", "run", "--json-logs", "--quiet", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
            async with proc:
                try:
                    await anyio.sleep(args.settle)
                    before, started = _cpu_seconds(proc.pid), time.monotonic()
                    await anyio.sleep(args.window)
                    after, ended = _cpu_seconds(proc.pid), time.monotonic()
                    proc.terminate()
                    with anyio.fail_after(STOP_SECONDS):
                        await proc.wait()
                finally:
                    if proc.returncode is None:
                        proc.kill()
    return (after - before) / (ended - started)


async def main(args: argparse.Namespace) -> None:
    print(
        f"dsup run --json-logs --quiet, {args.processes} sleeping processes, "
        f"CPU over {args.window:g} s after {args.settle:g} s, {args.runs} runs each"
    )
    async with open_fake_discord() as fake:
        for label, served in (("plain", None), ("bridged", fake)):
            figures = [await idle_cpu(served, args) * 1e6 for _ in range(args.runs)]
            runs = ", ".join(f"{f:.0f}" for f in figures)
            print(f"{label}: median {statistics.median(figures):.0f} us a second (runs: {runs})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=6.0)
    anyio.run(main, parser.parse_args(), backend="asyncio")
