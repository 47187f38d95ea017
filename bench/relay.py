"""The relay against the fake Discord: 429s, messages a second, state-change latency, CPU.

Runs a real ``dsup run`` with N workers that each write M lines of 50 B at once when a gate
opens and then R lines a second (a flood far beyond what Discord can show), plus
``crasher``, K processes that each exit every few seconds, against the project's fake
Discord served by this process with Discord's headers and a 5 per 5 s limit on creates
per channel. Twice: ``relay = "all"`` and ``relay = "none"`` (the bridge connected both
times). The gate opens once every crasher has crashed once and, relaying, its incident
message is posted and the outbox has caught up. A third of the window after the gate,
``burst``, B more processes, crash at the same moment (a gate file of their own) and
come back, while ``doomed`` crashes with them and then fails until it is FATAL: B + 1
incidents open at once. Half-way, ``crasher:0`` is stopped, and started a second later.
``--crashers 0 --burst 0`` runs the flood alone: the issue's workload for the CPU goal.

CPU is dsup's own from ``/proc/PID/task/*/schedstat``, per MB of a burst: the gate opens
``--bursts`` times, each from idle, and each burst's window is ``--burst-window`` seconds
from the gate, long enough for the burst's lines to be in the log files *and* for every
message the burst makes to be acknowledged by the fake (Discord's pace: about one a
second), the same length in both modes. From it is taken the CPU of an idle window of the
same length measured just before the gate, in the same run: what is left is the burst's own
cost, messages included. A window that ends before its burst's lines are logged or its
messages are sent is counted as late, and so is a message created in the idle window after
it: the figures of a run with late bursts are not honest, and say so. Each run's figure is
its median burst's (dsup's periodic work, the reaper's sweep or the ledger's checkpoint,
lands in some windows, idle or not); the sum of its bursts is printed too. The two modes
run ``--repeat`` times each, alternating which goes first, and the ratio is given per pair
as a median with its min and max: on a shared machine one pair's noise is larger than the
effect. Each run also gives its median burst's read calls (``/proc/PID/io``): the further
the workers get ahead of dsup, the fewer and bigger its reads, and a burst's CPU follows
their count, in either mode: the ratio is also given at equal reads (every burst's net CPU
fitted on its reads, one slope for both modes). The difference between the modes, divided
by the messages a burst made, is the CPU of one message. After the bursts the gate opens
once more and the workers write ``--rate`` lines a second each for ``--window`` seconds,
where the 429s, messages a second and latencies are measured. Latency: from each state
change (its time in dsup's ``--quiet --json-logs`` console, which shows state changes only,
in both modes; ``--console`` drops ``--quiet``) to the creation, in the fake, of the
message showing it, for every state change in the window (``--window`` seconds from its
opening, less the last 3): starts, exits, FATAL, stops, the burst's, split where the time
went: until the relay wrote the row to the outbox, until the sender took it (pacing, order,
its poll), until the fake created the message. And from each crash of the burst to its
incident's message. Prints figures; asserts nothing about speed.

    PYTHONPATH=. .venv/bin/python bench/relay.py [--workers 10] [--lines 100000]
        [--rate 2000] [--crashers 5] [--crash-every 2] [--burst 8] [--window 30]
        [--bursts 5] [--burst-window 4] [--console] [--repeat 3]
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

from tests._wait import Gate
from tests.bridge._bridge import discord_table, token_file
from tests.discord_fake import BotAction, FakeDiscord, open_fake_discord

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import Process

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_relay_worker.py"
BURST_WORKER = HERE.parent / "tests" / "workers" / "relay_burst.py"
LINE_BYTES = 50
DEADLINE = 120.0
_NOTE = re.compile(r"<t:(\d+):T> `([^`]+)` (\w+) → (\w+)")
_KINDS = {
    "STARTING": "starts",
    "RUNNING": "starts",
    "BACKOFF": "exits",
    "EXITED": "exits",
    "FATAL": "FATAL",
    "STOPPING": "stops",
    "STOPPED": "stops",
}


@dataclass(frozen=True, slots=True)
class Workload:
    """What each run does."""

    workers: int
    lines: int
    rate: int
    crashers: int
    crash_every: float
    burst: int
    window: float
    console: bool
    bursts: int
    burst_window: float


@dataclass(frozen=True, slots=True)
class Change:
    """One state change, as dsup's console showed it."""

    process: str
    old: str
    new: str
    at: float


@dataclass(frozen=True, slots=True)
class Latency:
    """One state change's way to Discord: seconds from the change to each step."""

    kind: str
    is_burst: bool
    written: float
    claimed: float
    created: float


@dataclass(frozen=True, slots=True)
class Burst:
    """One burst from idle: CPU in its window and in the idle window of the same length
    just before it, the messages it made, and whether the window held it all."""

    cpu: float
    idle: float
    messages: int
    is_late: bool
    reads: int

    @property
    def net(self) -> float:
        """The burst's own CPU: its window's less the idle window's."""
        return self.cpu - self.idle


@dataclass(frozen=True, slots=True)
class Figures:
    """One run's measures."""

    mode: str
    bursts: list[Burst]
    burst_bytes: int
    late_messages: int
    window_cpu: float
    window_seconds: float
    window_bytes: int
    peak_rss: int
    rejected: int
    creates: int
    edits: int
    latencies: list[Latency]
    missing: int
    incidents: list[float]

    @property
    def net_cpu(self) -> float:
        """CPU the bursts cost, net of idle (seconds)."""
        return sum(b.net for b in self.bursts)

    @property
    def net_cpu_per_mb(self) -> float:
        return self.net_cpu / (self.burst_bytes * len(self.bursts) / 1e6)

    @property
    def typical_net(self) -> float:
        """The median burst's net CPU: dsup's periodic work (the reaper's sweep, the
        ledger's checkpoint) falls in some windows, idle or not, whatever the mode."""
        return statistics.median(b.net for b in self.bursts)

    @property
    def typical_cpu_per_mb(self) -> float:
        return self.typical_net / (self.burst_bytes / 1e6)

    @property
    def messages(self) -> int:
        return sum(b.messages for b in self.bursts)

    @property
    def late(self) -> int:
        """Bursts whose window ended too soon, and messages created after their window."""
        return sum(b.is_late for b in self.bursts) + self.late_messages


def _cpu_seconds(pid: int) -> float:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def _reads(pid: int) -> int:
    """Read calls dsup made so far (pipes, files, sockets): a burst's count follows how
    far the workers got ahead of dsup, and its CPU follows the count."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscr:"):
            return int(line.split()[1])
    return 0


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _config(directory: Path, fake: FakeDiscord, mode: str, load: Workload) -> Path:
    gate = directory / "gate"
    flood = [
        sys.executable,
        str(WORKER),
        str(gate),
        str(load.lines),
        str(load.rate),
        str(load.bursts),
    ]
    crash = f"import time; time.sleep({load.crash_every}); raise SystemExit(1)"
    crasher = [sys.executable, "-c", crash]
    burst = [sys.executable, str(BURST_WORKER), str(directory / "burst"), str(directory / "m")]
    token = token_file(directory, fake.token)
    crashers = (
        f'[programs.crasher]\ncommand = {json.dumps(crasher)}\nrestart = "always"\n'
        f"numprocs = {load.crashers}\n"
        f'start_seconds = 0.1\nbackoff_seconds = 0.2\nrelay = "{mode}"\n'
    )
    bursting = (
        f"[programs.burst]\ncommand = {json.dumps(burst)}\nnumprocs = {load.burst}\n"
        f'start_seconds = 0.2\nbackoff_seconds = 0.2\nrelay = "{mode}"\n'
        f"[programs.doomed]\ncommand = {json.dumps([*burst, 'fail'])}\n"
        f'start_seconds = 0.5\nbackoff_seconds = 0.2\nstart_retries = 2\nrelay = "{mode}"\n'
    )
    return write_config(
        directory,
        f"[programs.flood]\ncommand = {json.dumps(flood)}\nnumprocs = {load.workers}\n"
        f'relay = "{mode}"\n',
        # --crashers 0 --burst 0: the issue's own workload, the flood alone.
        crashers if load.crashers else "",
        bursting if load.burst else "",
        discord_table(fake, token, status_channel=None, channels={"log_channel": "ops"}),
    )


def _logged_bytes(state: Path) -> int:
    """Bytes in the flood's stdout logs, rotated ones included (one being rotated: not yet)."""
    total = 0
    for path in state.rglob("flood-*.out.log*"):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def _query(state: Path, sql: str) -> list[tuple[object, ...]]:
    """Rows from another process's ledger, read-only."""
    uri = f"file:{state / 'ledger.sqlite3'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        return db.execute(sql).fetchall()


def _run_ends(state: Path, since: float) -> list[tuple[str, float]]:
    """(process, ended at) of the crashers' runs that ended since ``since``."""
    rows = _query(
        state,
        "SELECT process, ended_at FROM runs WHERE process LIKE 'crasher:%' "
        "AND ended_at IS NOT NULL ORDER BY ended_at",
    )
    return [(str(p), float(str(e))) for p, e in rows if float(str(e)) >= since]


def _outbox_times(state: Path) -> dict[int, tuple[float, float]]:
    """Per Discord message id: when its row was written and first taken by the sender."""
    rows = _query(
        state,
        "SELECT message_id, created_at, first_try_at FROM outbox "
        "WHERE message_id IS NOT NULL AND target IS NULL",
    )
    return {int(str(m)): (float(str(c)), float(str(f))) for m, c, f in rows}


def _shown(fake: FakeDiscord, since: float) -> list[tuple[int, float, str]]:
    """(message id, created at, line) of every line of every bot message in ops created
    since ``since`` (this run's)."""
    found: list[tuple[int, float, str]] = []
    for message in fake.bot_messages("ops"):
        at = datetime.datetime.fromisoformat(str(message["timestamp"])).timestamp()
        if at < since:
            continue
        lines = str(message.get("content", "")).splitlines()
        found.extend((int(message["id"]), at, line) for line in lines)
    return found


def _changes(out: Path) -> list[Change]:
    """Every state change dsup's ``--json-logs`` console showed, in order."""
    found = []
    for line in out.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("type") == "state":
            at = datetime.datetime.fromisoformat(record["time"]).timestamp()
            found.append(Change(record["process"], record["old"], record["new"], at))
    return found


def _latencies(
    fake: FakeDiscord, changes: list[Change], rows: dict[int, tuple[float, float]]
) -> tuple[list[Latency], int]:
    """For each change, the time until its row was written, taken, and its message created;
    and how many changes no message shows.

    A shown change names its process, states and second (``<t:SECOND:T>``): each change
    takes the first line of its process not yet taken that shows the same.
    """
    shown: dict[str, list[tuple[int, float, str, str, int]]] = {}
    for message_id, at, line in _shown(fake, changes[0].at if changes else 0.0):
        if m := _NOTE.search(line):
            shown.setdefault(m[2], []).append((message_id, at, m[3], m[4], int(m[1])))
    found, missing = [], 0
    for change in changes:
        lines = shown.get(change.process, [])
        index = next(
            (
                i
                for i, (_, _, old, new, second) in enumerate(lines)
                if (old, new, second) == (change.old, change.new, int(change.at))
            ),
            None,
        )
        if index is None:
            missing += 1
            continue
        message_id, at, *_ = lines.pop(index)
        written, claimed = rows.get(message_id, (float("nan"), float("nan")))
        found.append(
            Latency(
                kind=_KINDS.get(change.new, change.new),
                is_burst=change.process.startswith(("burst:", "doomed:")),
                written=written - change.at,
                claimed=claimed - change.at,
                created=at - change.at,
            )
        )
    return found, missing


def _incidents(actions: list[BotAction], changes: list[Change]) -> list[float]:
    """Seconds from each first crash of the burst to the creation of its incident's message
    (among ``actions``, this run's)."""
    crashes: dict[str, float] = {}
    for change in changes:
        if change.process.startswith(("burst:", "doomed:")) and change.old == "RUNNING":
            crashes.setdefault(change.process, change.at)
    found = []
    for action in actions:
        if action.kind != "create" or action.message is None:
            continue
        content = action.content or ""
        for process, at in crashes.items():
            if f"`{process}` crashed" in content or f"`{process}` is FATAL" in content:
                created = datetime.datetime.fromisoformat(str(action.message["timestamp"]))
                found.append(created.timestamp() - at)
    return found


async def _scenario(burst_gate: Gate, config: Path, window: float) -> None:
    """The burst a third into the window; crasher:0 stopped half-way, started again."""
    await anyio.sleep(window / 3)
    burst_gate.open()
    await anyio.sleep(window / 2 - window / 3)
    ctl = [sys.executable, "-m", "supervisor", "ctl", "-c", str(config)]
    await anyio.run_process([*ctl, "stop", "crasher:0"])
    await anyio.sleep(1.0)
    await anyio.run_process([*ctl, "start", "crasher:0"], check=False)


async def _logged(state: Path, size: int) -> None:
    """Wait until the flood's logs hold ``size`` bytes."""
    await _wait(lambda: _logged_bytes(state) >= size, f"{size:,} bytes in the log files")


def _open(gate: Path) -> None:
    """Let the workers write their next burst (the gate file grows by a byte)."""
    with gate.open("ab") as file:
        file.write(b".")


async def _wait(check: Callable[[], object], what: str) -> None:
    """Poll ``check`` (files and another process's database: nothing to await)."""
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {DEADLINE:.0f} s for {what}")
        await anyio.sleep(0.05)


async def run_once(fake: FakeDiscord, mode: str, load: Workload) -> Figures:
    """One run of dsup on the workload with ``relay = mode``."""
    with tempfile.TemporaryDirectory(prefix="dsup-relay-bench-") as tmp:
        directory = Path(tmp)
        config = _config(directory, fake, mode, load)
        identified = fake.identify_count
        quiet = [] if load.console else ["--quiet"]
        with (
            Gate(directory / "burst") as burst_gate,  # the burst's workers wait behind it
            (directory / "dsup.err").open("wb") as errors,
            (directory / "dsup.out").open("wb") as out,
        ):
            proc = await anyio.open_process(
                [sys.executable, "-m", "supervisor", "run", "--json-logs", *quiet, str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=errors,
            )
            async with proc:
                try:
                    return await _measure(proc, fake, mode, directory, load, identified, burst_gate)
                finally:
                    if proc.returncode is None:
                        proc.kill()


def _creates(fake: FakeDiscord) -> int:
    return sum(1 for a in fake.bot_actions("ops") if a.kind in ("create", "edit"))


def _pending(state: Path, fake: FakeDiscord) -> int:
    """Rows not sent yet: pending in the outbox and not created in the fake (dsup marks a
    new message sent with its next trip to the ledger, up to a second and a half later)."""
    (salt,) = _query(state, "SELECT value FROM outbox_meta WHERE key = 'salt'")[0]
    rows = _query(state, "SELECT id, target FROM outbox WHERE status = 'pending'")
    created = {m.get("nonce") for m in fake.bot_messages("ops")}
    # An edit (its target's nonce) counts as not sent until it is marked.
    return sum(t is not None or f"{salt}{int(str(i)):x}" not in created for i, t in rows)


async def _idle(pid: int, fake: FakeDiscord, seconds: float) -> tuple[float, int]:
    """dsup's CPU a second over ``seconds`` of idle, and the messages created meanwhile
    (late ones of the burst before: there must be none)."""
    created, cpu, t = _creates(fake), _cpu_seconds(pid), time.monotonic()
    await anyio.sleep(seconds)
    rate = (_cpu_seconds(pid) - cpu) / (time.monotonic() - t)
    return rate, _creates(fake) - created


async def _burst(
    pid: int, fake: FakeDiscord, mode: str, state: Path, logged: int, window: tuple[float, float]
) -> Burst:
    """Open the gate and measure ``seconds`` (``window``: with the idle CPU a second) from
    it: the burst must be logged (``logged`` bytes in the log files) and, relaying, its
    messages sent by then."""
    seconds, idle = window
    created, cpu, t, reads = _creates(fake), _cpu_seconds(pid), time.monotonic(), _reads(pid)
    _open(state.parent / "gate")
    await anyio.sleep(seconds)
    spent, elapsed = _cpu_seconds(pid) - cpu, time.monotonic() - t
    made = _creates(fake) - created
    is_late = _logged_bytes(state) < logged or (mode != "none" and _pending(state, fake) > 0)
    reads = _reads(pid) - reads
    return Burst(cpu=spent, idle=idle * elapsed, messages=made, is_late=is_late, reads=reads)


async def _measure(
    proc: Process,
    fake: FakeDiscord,
    mode: str,
    directory: Path,
    load: Workload,
    identified: int,
    burst_gate: Gate,
) -> Figures:
    """Warm up, open the gate, measure the burst and the window, stop dsup."""
    state = directory / "state"
    await _wait(lambda: fake.identify_count > identified, "the bridge")
    started = time.time()

    def crashed_once() -> bool:
        return len({p for p, _ in _run_ends(state, started - 60)}) >= load.crashers

    await _wait(crashed_once, "every crasher's first crash")

    if mode != "none":

        def incidents_posted() -> bool:
            shown = [m for m in fake.bot_messages("ops") if "crashed" in str(m["content"])]
            return len(shown) >= load.crashers

        await _wait(incidents_posted, "every crasher's incident")
        await _wait(lambda: _pending(state, fake) == 0, "the outbox to catch up")
    size = load.workers * load.lines * LINE_BYTES
    bursts: list[Burst] = []
    late_messages = 0
    for index in range(1, load.bursts + 1):
        idle, created = await _idle(proc.pid, fake, load.burst_window)
        if bursts and not load.crashers:  # a message of the burst before, after its window
            late_messages += created
        window = (load.burst_window, idle)
        bursts.append(await _burst(proc.pid, fake, mode, state, size * index, window))
    _, created = await _idle(proc.pid, fake, load.burst_window)
    late_messages += 0 if load.crashers else created
    actions0 = len(fake.bot_actions("ops"))
    rejected0 = sum(s.rejected for s in fake.limiter.stats.values())
    logged0 = _logged_bytes(state)
    cpu0, t0, wall0 = _cpu_seconds(proc.pid), time.monotonic(), time.time()
    _open(directory / "gate")  # the workers' steady output, for the window
    async with anyio.create_task_group() as tg:
        if load.crashers and load.burst:
            tg.start_soon(_scenario, burst_gate, directory / "dsup.toml", load.window)
        await anyio.sleep(load.window)
    cpu2, t2, wall2 = _cpu_seconds(proc.pid), time.monotonic(), time.time()
    logged = _logged_bytes(state)
    actions = fake.bot_actions("ops")[actions0:]
    peak = _peak_rss(proc.pid)
    proc.send_signal(signal.SIGTERM)
    with anyio.fail_after(60):
        await proc.wait()
    changes = [c for c in _changes(directory / "dsup.out") if wall0 <= c.at <= wall2 - 3.0]
    latencies, missing = (
        _latencies(fake, changes, _outbox_times(state)) if mode != "none" else ([], 0)
    )
    return Figures(
        mode=mode,
        bursts=bursts,
        burst_bytes=size,
        late_messages=late_messages,
        window_cpu=cpu2 - cpu0,
        window_seconds=t2 - t0,
        window_bytes=logged - logged0,
        peak_rss=peak,
        rejected=sum(s.rejected for s in fake.limiter.stats.values()) - rejected0,
        creates=sum(1 for a in actions if a.kind == "create"),
        edits=sum(1 for a in actions if a.kind == "edit"),
        latencies=latencies,
        missing=missing,
        incidents=_incidents(actions, changes) if mode != "none" else [],
    )


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _spread(values: list[float]) -> str:
    known = [v for v in values if v == v]  # not NaN
    if not known:
        return "n=0"
    return (
        f"median {statistics.median(known):.2f} s, p99 {_p(known, 0.99):.2f} s, "
        f"max {max(known):.2f} s (n={len(known)})"
    )


def _pairs(count: int) -> list[tuple[str, str]]:
    """``count`` pairs of modes, alternating which goes first (ABBA): a drift of the
    machine's load over the runs falls on both modes alike."""
    return [("all", "none") if i % 2 == 0 else ("none", "all") for i in range(count)]


def _at_equal_reads(runs: list[tuple[Figures, Figures]]) -> str:
    """The modes' mean bursts compared at the same read count: each burst's net CPU fitted
    on its reads with one slope for both modes (least squares within each mode), so that
    bursts with more or fewer reads by chance weigh less on the difference."""
    modes = [[b for pair in runs for b in pair[i].bursts] for i in (0, 1)]
    means = [
        (statistics.fmean(b.reads for b in bs), statistics.fmean(b.net for b in bs)) for bs in modes
    ]
    spread = sum((b.reads - r) ** 2 for bs, (r, _) in zip(modes, means, strict=True) for b in bs)
    if not spread:
        return "no spread of reads"
    slope = (
        sum(
            (b.reads - r) * (b.net - c) for bs, (r, c) in zip(modes, means, strict=True) for b in bs
        )
        / spread
    )
    (reads_all, all_), (reads_none, none) = means
    extra = all_ - none - slope * (reads_all - reads_none)
    base = none + slope * ((reads_all + reads_none) / 2 - reads_none)  # "none" between them
    return (
        f"{extra / base * 100:+.1f} % ({extra * 1e6:+.0f} us a burst; mean reads "
        f"{reads_all:.0f} and {reads_none:.0f}, {slope * 1e6:.1f} us of CPU a read)"
    )


def _ratio_spread(ratios: list[float]) -> str:
    """The median of per-pair ratios as a change in percent, with the min and max."""
    changes = sorted((r - 1) * 100 for r in ratios)
    return (
        f"median {statistics.median(changes):+.1f} % "
        f"(min {changes[0]:+.1f} %, max {changes[-1]:+.1f} %, n={len(changes)} pairs)"
    )


async def main(load: Workload, repeat: int) -> None:
    runs: list[tuple[Figures, Figures]] = []
    async with open_fake_discord() as fake:
        for first, second in _pairs(repeat):
            done = {first: await run_once(fake, first, load)}
            done[second] = await run_once(fake, second, load)
            runs.append((done["all"], done["none"]))
    mb = runs[0][0].burst_bytes / 1e6
    print(
        f"workload: {load.workers} workers x {load.lines:,} lines of {LINE_BYTES} B = {mb:.0f} MB "
        f"at once, {load.bursts} times from idle, each measured over {load.burst_window:g} s "
        f"less an idle {load.burst_window:g} s just before; then {load.rate:,} lines/s each; "
        f"{load.crashers} crashers exiting every {load.crash_every:g} s; "
        f"{load.burst} + 1 crashing at once a third into the window; window {load.window:g} s; "
        + ("console showing output (to a file)" if load.console else "dsup run --quiet")
        + f"; {repeat} pairs of runs, alternating which mode goes first"
    )
    for index, pair in enumerate(runs, 1):
        for fig in pair:
            net = ", ".join(f"{b.net * 1000:.1f}" for b in fig.bursts)
            print(
                f'{index}. relay = "{fig.mode}": net CPU per burst {net} ms '
                f"= {fig.net_cpu_per_mb * 1000:.3f} ms/MB (median burst "
                f"{fig.typical_cpu_per_mb * 1000:.3f}); idle "
                f"{statistics.median(b.idle for b in fig.bursts) * 1000:.1f} ms a window; "
                f"{statistics.median(b.reads for b in fig.bursts):.0f} reads a burst; "
                f"{fig.messages} messages; late: {fig.late}; window: "
                f"{fig.window_bytes / 1e6:.0f} MB logged, dsup CPU {fig.window_cpu:.2f} s "
                f"({fig.window_cpu / fig.window_seconds * 100:.1f} % of a core); "
                f"peak RSS {fig.peak_rss / 2**20:.0f} MiB"
            )
    relayed = [fig for fig, _ in runs]
    print(f"429s answered by the fake: {sum(fig.rejected for fig in relayed)}")
    seconds = sum(fig.window_seconds for fig in relayed)
    creates = sum(fig.creates for fig in relayed)
    edits = sum(fig.edits for fig in relayed)
    print(
        f"ops during the windows: {creates} messages created "
        f"({creates / seconds:.2f}/s; the fake allows 5 per 5 s), "
        f"{edits} edits ({edits / seconds:.2f}/s)"
    )
    lat = [x for fig in relayed for x in fig.latencies]
    missing = sum(fig.missing for fig in relayed)
    print(
        f"state change -> message, every change in the windows: "
        f"{_spread([x.created for x in lat])}; not shown: {missing}"
    )
    for kind in ("starts", "exits", "FATAL", "stops"):
        print(f"  {kind}: {_spread([x.created for x in lat if x.kind == kind])}")
    print(
        f"  the burst's ({load.burst} + 1 crashing at once): "
        f"{_spread([x.created for x in lat if x.is_burst])}"
    )
    print(f"  ... row in the outbox: {_spread([x.written for x in lat])}")
    print(f"  ... row taken by the sender: {_spread([x.claimed for x in lat])}")
    incidents = [x for fig in relayed for x in fig.incidents]
    print(f"burst crash -> its incident's message: {_spread(incidents)}")
    late = sum(a.late + n.late for a, n in runs)
    print(
        "every burst's lines logged and messages sent within its window"
        if not late
        else f"NOT HONEST: {late} bursts or messages fell outside their windows "
        "(raise --burst-window)"
    )
    ratios = [a.typical_cpu_per_mb / n.typical_cpu_per_mb for a, n in runs]
    print(
        f'burst CPU per MB, net of idle, relay "all" / "none", the median burst of each run: '
        f"{_ratio_spread(ratios)}"
    )
    ratios = [a.net_cpu_per_mb / n.net_cpu_per_mb for a, n in runs]
    print(f"  all the bursts of each run: {_ratio_spread(ratios)}")
    print(f"  at equal reads: {_at_equal_reads(runs)}")
    per_message = sorted(
        (a.typical_net - n.typical_net) / (a.messages / len(a.bursts)) * 1e6
        for a, n in runs
        if a.messages
    )
    if per_message:
        print(
            f"CPU per message (the median bursts' difference / the messages a burst made): "
            f"median {statistics.median(per_message):.0f} us (min {per_message[0]:.0f}, "
            f"max {per_message[-1]:.0f}); "
            f"{statistics.median(a.messages / len(a.bursts) for a, _ in runs):.1f} messages a burst"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--lines", type=int, default=100_000, help="each, at once")
    parser.add_argument("--rate", type=int, default=2000, help="lines a second each, then")
    parser.add_argument("--crashers", type=int, default=5, help="crashing processes")
    parser.add_argument("--crash-every", type=float, default=2.0, help="seconds")
    parser.add_argument("--burst", type=int, default=8, help="processes crashing at once")
    parser.add_argument("--window", type=float, default=30.0, help="seconds from the gate")
    parser.add_argument("--bursts", type=int, default=5, help="bursts measured per run")
    parser.add_argument(
        "--burst-window",
        type=float,
        default=4.0,
        help="seconds a burst is measured (its messages must be sent by then)",
    )
    parser.add_argument(
        "--console", action="store_true", help="let the console show output (not --quiet)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help='pairs of runs ("all" and "none", alternating)'
    )
    args = parser.parse_args()
    workload = Workload(
        workers=args.workers,
        lines=args.lines,
        rate=args.rate,
        crashers=args.crashers,
        crash_every=args.crash_every,
        burst=args.burst,
        window=args.window,
        console=args.console,
        bursts=max(1, args.bursts),
        burst_window=args.burst_window,
    )
    anyio.run(main, workload, max(1, args.repeat), backend="asyncio")
