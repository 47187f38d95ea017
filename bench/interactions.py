"""Interaction benchmark: what the bridge computes before it answers Discord.

Prints, for fleets of 50 to 5,000 processes (programs of 10 processes each):
  - autocomplete: microseconds to rank the names for a typed prefix, a word and a
    fuzzy input (Discord allows 3 s, with no deferring);
  - replies: milliseconds to render a /status answer (text or attachment) and an
    action answer;
  - log packing: milliseconds and output size to pack a 40 MiB log into a 10 MiB
    attachment (gzip) and into 100 KiB (the newest part).

Run: .venv/bin/python bench/interactions.py
"""

from __future__ import annotations

import functools
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.bridge.complete import rank_targets
from supervisor.bridge.logfile import pack_log
from supervisor.bridge.replies import render
from supervisor.commands.access import Command
from supervisor.commands.reports import ActionReport, ProcessInfo, ProcessResult, StatusReport
from supervisor.events import ProcessState
from supervisor.process.status import ProcessStatus

if TYPE_CHECKING:
    from collections.abc import Callable


def _timed(fn: Callable[[], object], repeat: int) -> float:
    began = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - began) / repeat


def _status(name: str) -> ProcessStatus:
    return ProcessStatus(
        process=name,
        program=name.split(":")[0],
        index=int(name.split(":")[1]),
        state=ProcessState.RUNNING,
        pid=12345,
        run_id="r",
        started_at=1000.0,
        state_since=1000.0,
        restarts=0,
        last_exit_code=None,
        last_exit_signal=None,
        last_error="",
    )


def main() -> None:
    """Print the figures."""
    for count in (50, 500, 5000):
        programs = [f"worker-{i:04d}" for i in range(count // 10)]
        processes = [f"{p}:{j}" for p in programs for j in range(10)]
        cases = {"prefix 'worker-01'": "worker-01", "word '0042'": "0042", "fuzzy 'w42:3'": "w42:3"}
        for label, typed in cases.items():
            seconds = _timed(functools.partial(rank_targets, typed, programs, processes), 20)
            print(f"autocomplete, {count} processes, {label}: {seconds * 1e6:.0f} us")
        rows = tuple(
            ProcessInfo(status=_status(n), rss_bytes=10**7, cpu_percent=1.5) for n in processes
        )
        report = StatusReport(node="n", at=2000.0, processes=rows)
        seconds = _timed(functools.partial(render, report, title="/status"), 5)
        print(f"/status reply, {count} processes: {seconds * 1e3:.1f} ms")
        action = ActionReport(
            command=Command.RESTART,
            target="all",
            processes=tuple(
                ProcessResult(process=n, outcome="ok", state=ProcessState.RUNNING, pid=1)
                for n in processes
            ),
        )
        seconds = _timed(functools.partial(render, action, title="/restart all"), 5)
        print(f"/restart reply, {count} processes: {seconds * 1e3:.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "big.log"
        with log.open("wb") as out:
            for i in range(600_000):
                out.write(
                    b"2026-12-05T18:00:00 worker line %d: fetched page %d in %d ms\n"
                    % (i, i * 7, i % 977)
                )
        size = log.stat().st_size
        for limit in (10 * 1024 * 1024, 100 * 1024):
            began = time.perf_counter()
            packed = pack_log(log, "big.log", limit)
            took = time.perf_counter() - began
            assert packed.attachment is not None
            print(
                f"pack {size / 2**20:.0f} MiB log into {limit // 1024} KiB: {took * 1e3:.0f} ms, "
                f"{len(packed.attachment.data) / 1024:.0f} KiB sent ({packed.note})"
            )


if __name__ == "__main__":
    main()
