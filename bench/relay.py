"""The relay against the fake Discord: 429s, messages a second, state-change latency, CPU.

Runs a real ``dsup run`` with N workers that each write M lines of 50 B once a gate
opens, plus ``crasher``, a program that exits every few seconds (its state changes are what
the latency is measured on), against the project's fake Discord served by this
process with Discord's headers and a 5 per 5 s limit on creates per channel. Twice:
``relay = "all"`` and ``relay = "none"`` (the bridge connected both times). CPU is
dsup's own from ``/proc/PID/task/*/schedstat``, from the gate's opening until every
line is in the log files (the output reaches Discord later, at Discord's pace).
Latency: from a run's end in the ledger (``runs.ended_at``) to the creation, in the
fake, of the message showing that state change. Prints figures; asserts nothing
about speed.

    PYTHONPATH=. .venv/bin/python bench/relay.py [--workers 10] [--lines 100000]
        [--crash-every 3] [--console]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from _dsup_driver import write_config

from tests.bridge._bridge import discord_table, token_file
from tests.discord_fake import FakeDiscord, open_fake_discord

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import Process

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_relay_worker.py"
LINE_BYTES = 50
DEADLINE = 120.0
WINDOW_SECONDS = 30.0
"""Each run lasts at least this from the gate's opening: latency samples."""
ROUTES = (("POST", "/channels/{channel_id}/messages"), ("PATCH", "/channels/{c}/messages/{m}"))
_EXIT = re.compile(r"<t:(\d+):T> `crasher:0` \w+ → (?:EXITED|BACKOFF|FATAL)")


@dataclass(frozen=True, slots=True)
class Figures:
    """One run's measures."""

    mode: str
    seconds: float
    drained: float
    cpu_seconds: float
    nbytes: int
    peak_rss: int
    rejected: int
    messages: int
    per_second: float
    latencies: list[float]

    @property
    def cpu_per_mb(self) -> float:
        return self.cpu_seconds / (self.nbytes / 1e6)


def _cpu_seconds(pid: int) -> float:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _config(
    directory: Path, fake: FakeDiscord, mode: str, workers: int, lines: int, crash_every: float
) -> Path:
    gate = directory / "gate"
    flood = [sys.executable, str(WORKER), str(gate), str(lines)]
    crasher = [sys.executable, "-c", f"import time; time.sleep({crash_every}); raise SystemExit(1)"]
    token = token_file(directory, fake.token)
    return write_config(
        directory,
        f"[programs.flood]\ncommand = {json.dumps(flood)}\nnumprocs = {workers}\n"
        f'relay = "{mode}"\n',
        f'[programs.crasher]\ncommand = {json.dumps(crasher)}\nrestart = "always"\n'
        f'start_seconds = 0.1\nbackoff_seconds = 0.2\nrelay = "{mode}"\n',
        discord_table(fake, token, status_channel=None, channels={"log_channel": "ops"}),
    )


def _logged_bytes(state: Path) -> int:
    return sum(p.stat().st_size for p in state.rglob("flood-*.out.log"))


def _pending_output(state: Path) -> int:
    """Output rows not sent yet (the crasher's state changes keep coming: not those)."""
    uri = f"file:{state / 'ledger.sqlite3'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM outbox WHERE status = 'pending' AND kind = 'output'"
        ).fetchone()
    return int(count)


def _run_ends(state: Path, since: float) -> list[float]:
    uri = f"file:{state / 'ledger.sqlite3'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        rows = db.execute(
            "SELECT ended_at FROM runs WHERE process = 'crasher:0' AND ended_at IS NOT NULL "
            "ORDER BY started_at"
        ).fetchall()
    return [end for (end,) in rows if end >= since]


def _shown(fake: FakeDiscord) -> list[tuple[float, str]]:
    """(created at, line) of every line of every message the bot created in ops."""
    found: list[tuple[float, str]] = []
    for message in fake.bot_messages("ops"):
        at = datetime.datetime.fromisoformat(str(message["timestamp"])).timestamp()
        found.extend((at, line) for line in str(message.get("content", "")).splitlines())
    return found


def _latencies(fake: FakeDiscord, ends: list[float]) -> list[float]:
    """For each run end, the time until the message showing it was created.

    A shown exit names its second (``<t:SECOND:T>``): each run end takes the first
    exit not yet taken that names the same second (or the next: rounding).
    """
    exits = [(at, int(m[1])) for at, line in _shown(fake) if (m := _EXIT.search(line))]
    taken = [False] * len(exits)
    found = []
    for end in ends:
        for index, (at, second) in enumerate(exits):
            if not taken[index] and second in (int(end), int(end) + 1):
                taken[index] = True
                found.append(at - end)
                break
    return found


async def _wait(check: Callable[[], object], what: str) -> None:
    """Poll ``check`` (files and another process's database: nothing to await)."""
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {DEADLINE:.0f} s for {what}")
        await anyio.sleep(0.05)


async def run_once(
    fake: FakeDiscord, mode: str, workers: int, lines: int, crash_every: float, console: bool
) -> Figures:
    """One run of dsup on the workload with ``relay = mode``."""
    with tempfile.TemporaryDirectory(prefix="dsup-relay-bench-") as tmp:
        directory = Path(tmp)
        config = _config(directory, fake, mode, workers, lines, crash_every)
        identified = fake.identify_count
        quiet = [] if console else ["--quiet"]
        with (directory / "dsup.err").open("wb") as errors:
            proc = await anyio.open_process(
                [sys.executable, "-m", "supervisor", "run", *quiet, str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        async with proc:
            try:
                return await _measure(proc, fake, mode, directory, workers, lines, identified)
            finally:
                if proc.returncode is None:
                    proc.kill()


async def _measure(
    proc: Process,
    fake: FakeDiscord,
    mode: str,
    directory: Path,
    workers: int,
    lines: int,
    identified: int,
) -> Figures:
    """Open the gate, wait for the logs (and the outbox), stop dsup, gather the figures."""
    state = directory / "state"
    await _wait(lambda: fake.identify_count > identified, "the bridge")
    await anyio.sleep(1.0)  # the bridge's READY, the crasher's first runs
    sent_before = len(fake.bot_messages("ops"))
    cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
    wall0 = time.time()
    (directory / "gate").touch()
    expected = workers * lines * LINE_BYTES
    await _wait(lambda: _logged_bytes(state) >= expected, "the log files")
    cpu1, t1 = _cpu_seconds(proc.pid), time.monotonic()
    if mode != "none":
        await _wait(lambda: _pending_output(state) == 0, "the outbox's output")
    drained = time.monotonic() - t0
    # The crasher goes on: state changes during and after the flood.
    await anyio.sleep(max(0.0, WINDOW_SECONDS - drained))
    wall1 = time.time()
    window = time.monotonic() - t0
    peak = _peak_rss(proc.pid)
    proc.send_signal(signal.SIGTERM)
    with anyio.fail_after(60):
        await proc.wait()
    ends = [e for e in _run_ends(state, wall0) if e <= wall1 - 3.0]
    created = len(fake.bot_messages("ops")) - sent_before
    rejected = sum(fake.rate_limit_stats("ops", route).rejected for route in ROUTES)
    return Figures(
        mode=mode,
        seconds=t1 - t0,
        drained=drained,
        cpu_seconds=cpu1 - cpu0,
        nbytes=_logged_bytes_total(workers, lines),
        peak_rss=peak,
        rejected=rejected,
        messages=created,
        per_second=created / window,
        latencies=_latencies(fake, ends) if mode != "none" else [],
    )


def _logged_bytes_total(workers: int, lines: int) -> int:
    return workers * lines * LINE_BYTES


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(workers: int, lines: int, crash_every: float, console: bool) -> None:
    async with open_fake_discord() as fake:
        relayed = await run_once(fake, "all", workers, lines, crash_every, console)
        fake.limiter.stats.clear()
        quiet = await run_once(fake, "none", workers, lines, crash_every, console)
    mb = relayed.nbytes / 1e6
    print(
        f"workload: {workers} workers x {lines:,} lines of {LINE_BYTES} B = {mb:.0f} MB, "
        f"crasher exiting every {crash_every:g} s, "
        + ("console showing output (to /dev/null)" if console else "dsup run --quiet")
    )
    for fig in (relayed, quiet):
        print(
            f'relay = "{fig.mode}": {fig.seconds:.1f} s until logged, '
            f"{fig.drained:.1f} s until its output was sent; dsup CPU until logged "
            f"{fig.cpu_seconds:.2f} s = {fig.cpu_per_mb * 1000:.1f} ms/MB, "
            f"peak RSS {fig.peak_rss / 2**20:.0f} MiB"
        )
    print(f"429s answered by the fake (ops): {relayed.rejected}")
    print(
        f"messages created in ops during the run: {relayed.messages} "
        f"({relayed.per_second:.2f}/s; the fake allows 5 per 5 s)"
    )
    lat = relayed.latencies
    if lat:
        print(
            f"state change -> message: n={len(lat)}, median {statistics.median(lat):.2f} s, "
            f"p99 {_p(lat, 0.99):.2f} s, max {max(lat):.2f} s"
        )
    ratio = relayed.cpu_per_mb / quiet.cpu_per_mb
    print(f'CPU per MB, relay "all" / "none": {ratio:.3f} ({(ratio - 1) * 100:+.1f} %)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--crash-every", type=float, default=3.0, help="seconds")
    parser.add_argument(
        "--console", action="store_true", help="let the console show output (not --quiet)"
    )
    args = parser.parse_args()
    anyio.run(main, args.workers, args.lines, args.crash_every, args.console, backend="asyncio")
