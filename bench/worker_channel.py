"""What the worker channel (``DSUP_FD``) costs: idle workers that never use it, and a flood.

Runs a fleet in this process twice, the same ``sleep`` workers each time, once with a
channel per run and once without, and over an idle window counts the event loop's
wake-ups (calls to its selector) and dsup's CPU time. A worker that never writes on
its channel must cost no wake-up: the ratio should be about 1.00. Then one worker
floods its channel with progress messages, garbage and logs, and the figures show
what dsup spent per message and how many progress events it let through.

Last, what the SDK's calls cost the worker: a child times a burst of ``progress()``
and ``log()`` calls on a channel this process drains, and a burst against a reader
that never reads (a stuck dsup: calls must still return at once).

Run: .venv/bin/python bench/worker_channel.py [--count 200] [--idle 5]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from supervisor.config.schema import load_config
from supervisor.events import Event, ProgressReported
from supervisor.process.fleet import Fleet
from supervisor.reaper.reaper import Reaper
from supervisor.state.ledger import Ledger
from supervisor.state.statedir import open_state_dir

if TYPE_CHECKING:
    from collections.abc import Callable

    from supervisor.process.slot import SlotContext


class _NoChannelFleet(Fleet):
    """The same fleet, its runs without a channel (the baseline)."""

    def _context(self) -> SlotContext:
        return dataclasses.replace(super()._context(), desk=None, store=None)


class _Counter:
    def __init__(self) -> None:
        self.progress = 0

    def deliver(self, event: Event) -> None:
        self.progress += isinstance(event, ProgressReported)


def _config(directory: Path, programs: str) -> Path:
    path = directory / "dsup.toml"
    path.write_text(f'[supervisor]\nname = "bench"\nstate_dir = "state"\n\n{programs}')
    return path


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(
    config_path: Path, fleet_type: type[Fleet], seconds: float, ready: Callable[[Fleet], bool]
) -> tuple[int, float, int]:
    """Wake-ups and CPU seconds over ``seconds`` once ``ready``; and progress events seen."""
    config = load_config(config_path)
    counter = _Counter()
    loop = asyncio.get_running_loop()
    selector = loop._selector  # type: ignore[attr-defined]  # the bench counts its calls
    select = selector.select
    calls = [0]

    def counting(timeout: float | None = None) -> object:
        calls[0] += 1
        return select(timeout)

    with (
        open_state_dir(config.supervisor.state_dir) as state,
        Ledger.open(state.ledger_path) as ledger,
    ):
        reaper = Reaper(instance_id=state.instance_id, ledger=ledger)
        fleet = fleet_type(config, state=state, ledger=ledger, reaper=reaper, sinks=[counter])
        async with anyio.create_task_group() as tg:
            await tg.start(fleet.run)
            with anyio.fail_after(60):
                while not ready(fleet):  # noqa: ASYNC110 - a bench polls its fleet
                    await anyio.sleep(0.1)
            selector.select = counting
            began = _cpu()
            await anyio.sleep(seconds)
            used = _cpu() - began
            selector.select = select
            fleet.request_shutdown()
    return calls[0], used, counter.progress


def _all_running(fleet: Fleet) -> bool:
    return all(s.status().state.value == "RUNNING" for s in fleet.processes())


async def _idle(count: int, seconds: float) -> None:
    programs = (
        f'[programs.sleeper]\ncommand = ["sleep", "3600"]\nnumprocs = {count}\n'
        "start_seconds = 0.5\n"
    )
    rows = []
    for fleet_type in (Fleet, _NoChannelFleet):
        with tempfile.TemporaryDirectory() as tmp:
            config = _config(Path(tmp), programs)
            wakeups, cpu, _ = await _measure(config, fleet_type, seconds, _all_running)
            rows.append((wakeups, cpu))
    (w_on, c_on), (w_off, c_off) = rows
    print(f"{count} idle workers, {seconds:g} s idle window:")
    print(f"  with a channel each:   {w_on:6d} loop wake-ups, {c_on * 1000:7.1f} ms CPU")
    print(f"  without channels:      {w_off:6d} loop wake-ups, {c_off * 1000:7.1f} ms CPU")
    print(
        f"  ratio with/without:    {w_on / max(w_off, 1):6.2f} wake-ups, "
        f"{c_on / max(c_off, 1e-9):5.2f} CPU"
    )


FLOOD = r"""
import os, sys
fd = int(os.environ["DSUP_FD"])
n = int(sys.argv[1])
chunk = b"".join(b'{"type":"progress","fraction":%.6f}\n' % (i / n) for i in range(1, n + 1))
chunk += b"garbage \xff\n" * (n // 10) + b'{"type":"log","text":"x"}\n' * (n // 10)
view = memoryview(chunk)
while view:
    view = view[os.write(fd, view[:1 << 20]):]
print("flooded", flush=True)
import time
time.sleep(3600)
"""


async def _flood(messages: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "flood.py"
        script.write_text(FLOOD)
        programs = (
            f'[programs.flood]\ncommand = ["{sys.executable}", "{script}", "{messages}"]\n'
            "start_seconds = 0.2\n"
        )
        config = _config(Path(tmp), programs)
        log = Path(tmp) / "state" / "logs" / "flood-0.out.log"
        began = time.monotonic()
        cpu0 = _cpu()

        def flooded(fleet: Fleet) -> bool:
            progress = fleet.processes()[0].status().progress
            return progress is not None and progress.fraction == 1.0 and log.exists()

        _, _, events = await _measure(config, Fleet, 0.6, flooded)
        took, cpu = time.monotonic() - began, _cpu() - cpu0
    total = messages * 6 // 5
    print(f"flood: {messages:,} progress messages + {total - messages:,} garbage and log lines")
    print(
        f"  read and handled in {took:.2f} s wall, {cpu:.2f} s CPU "
        f"({cpu / total * 1e6:.2f} us CPU a line, start-up included)"
    )
    print(f"  progress events let through: {events}")


SDK_CALLS = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from worker_sdk import log, progress
n = int(sys.argv[2])
began = time.perf_counter()
for i in range(n):
    progress(i, total=n, text="step")
took_progress = time.perf_counter() - began
began = time.perf_counter()
for i in range(n // 10):
    log("a line of 60 characters, give or take, for the operator ...")
took_log = time.perf_counter() - began
print(f"{took_progress / n * 1e6:.2f} {took_log / (n // 10) * 1e6:.2f}", flush=True)
"""


def _sdk_costs(calls: int) -> None:
    repo = str(Path(__file__).resolve().parents[1])
    for label, drained in (("dsup reading", True), ("dsup stuck", False)):
        ours, theirs = socket.socketpair()
        with (
            ours,
            subprocess.Popen(
                [sys.executable, "-c", SDK_CALLS, repo, str(calls)],
                env={**os.environ, "DSUP_FD": str(theirs.fileno())},
                pass_fds=(theirs.fileno(),),
                stdout=subprocess.PIPE,
                text=True,
            ) as child,
        ):
            theirs.close()
            if drained:
                while ours.recv(1 << 20):
                    pass
            assert child.stdout is not None
            per_progress, per_log = child.stdout.readline().split()
            if not drained:
                child.kill()  # its exit flush would wait 5 s for the stuck reader
            child.wait()
        print(
            f"  {label:13s} progress() {float(per_progress):6.2f} us a call, "
            f"log() {float(per_log):6.2f} us a call ({calls:,} and {calls // 10:,} calls)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=200, help="idle workers (default 200)")
    parser.add_argument("--idle", type=float, default=5.0, help="idle window in seconds")
    parser.add_argument("--flood", type=int, default=200_000, help="progress messages")
    parser.add_argument("--calls", type=int, default=100_000, help="SDK calls timed")
    args = parser.parse_args()
    anyio.run(_idle, args.count, args.idle, backend="asyncio")
    anyio.run(_flood, args.flood, backend="asyncio")
    print("worker_sdk calls, timed in the worker:")
    _sdk_costs(args.calls)


if __name__ == "__main__":
    main()
