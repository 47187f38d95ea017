"""Benchmark driver: dsup's real pump on a real child, into real log files.

Spawns the command after ``--`` with two pipes from :func:`make_pipe`, pumps
stdout and stderr concurrently into :class:`RotatingLog` files (no rotation, as
for supervisord in the same benchmark) and prints a JSON summary at the end.
``--consumer none`` passes no consumer (log capture only); ``full`` is a
consumer that is always full (dropped lines counted); ``all`` takes every
line (whole lines as bytes, as the pump hands them out).

The benches that run ``dsup run`` import :func:`write_config` and :func:`program_table`
from here to write their config.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from supervisor.output.logfile import RotatingLog, log_paths
from supervisor.output.pump import PIPE_BYTES, make_pipe, pump

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import Process

    from supervisor.events import OutputChunk, Stream

_STREAMS: tuple[Stream, Stream] = ("stdout", "stderr")
SLEEP = ["sleep", "3600"]


def program_table(
    name: str, command: list[str], *, numprocs: int, start_seconds: float, stop_timeout: float
) -> str:
    """A ``[programs.NAME]`` table of ``numprocs`` copies of ``command``."""
    return (
        f"[programs.{name}]\ncommand = {json.dumps(command)}\nnumprocs = {numprocs}\n"
        f"start_seconds = {start_seconds}\nstop_timeout_seconds = {stop_timeout}\n"
    )


def write_config(directory: Path, *tables: str) -> Path:
    """``directory/dsup.toml``: node ``bench`` (state in ``directory/state``) and ``tables``."""
    config = directory / "dsup.toml"
    head = '[supervisor]\nname = "bench"\nstate_dir = "state"\n'
    config.write_text("\n".join([head, *tables]), encoding="utf-8")
    return config


@contextlib.asynccontextmanager
async def quiet_dsup(config: Path) -> AsyncIterator[Process]:
    """``dsup run --quiet config`` with no terminal; SIGTERM'd at the end (killed after 60 s)."""
    dsup = await anyio.open_process(
        [sys.executable, "-m", "supervisor", "run", "--quiet", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield dsup
    finally:
        dsup.terminate()
        with anyio.move_on_after(60, shield=True):
            await dsup.wait()
        if dsup.returncode is None:
            dsup.kill()


class _Counter:
    """A consumer that takes chunks (or none) and counts the lines it missed.

    The lines taken are counted once, at the end, from the bytes kept in total
    (``lines`` is what the log holds when every line was taken).
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self.bytes = 0
        self.dropped = 0

    def room(self, process: str) -> tuple[int, None]:
        return self._capacity, None

    def deliver(self, chunk: OutputChunk) -> None:
        self.bytes += len(chunk.data)
        self.dropped += chunk.dropped


def _spawn(argv: list[str], pipe_bytes: int) -> tuple[subprocess.Popen[bytes], dict[Stream, int]]:
    fds: dict[Stream, int] = {}
    ends: list[int] = []
    for stream in _STREAMS:
        fds[stream], end = make_pipe(pipe_bytes)
        ends.append(end)
    try:
        proc = subprocess.Popen(
            argv, stdout=ends[0], stderr=ends[1], stdin=subprocess.DEVNULL, start_new_session=True
        )
    finally:
        for end in ends:
            os.close(end)
    return proc, fds


async def _run(args: argparse.Namespace, argv: list[str]) -> dict[str, int]:
    proc, fds = _spawn(argv, args.pipe_bytes)
    counters = {stream: _Counter(0 if args.consumer == "full" else 1 << 40) for stream in _STREAMS}
    consumers = {s: None if args.consumer == "none" else counters[s] for s in _STREAMS}
    paths = dict(zip(_STREAMS, log_paths(Path(args.log_dir), "flood:0"), strict=True))
    totals: dict[Stream, int] = {}

    async def one(stream: Stream, log: RotatingLog) -> None:
        totals[stream] = await pump(
            fds[stream],
            process="flood:0",
            stream=stream,
            log=log,
            consumer=consumers[stream],
            max_line_bytes=args.max_line_bytes,
        )

    try:
        with contextlib.ExitStack() as stack:
            logs = {
                s: stack.enter_context(RotatingLog(paths[s], max_bytes=0, backups=0))
                for s in _STREAMS
            }
            print("ready", flush=True)
            async with anyio.create_task_group() as tg:
                for stream in _STREAMS:
                    tg.start_soon(one, stream, logs[stream])
    finally:
        for fd in fds.values():
            os.close(fd)
    code = await anyio.to_thread.run_sync(proc.wait)
    return {
        "exit": code,
        "bytes": sum(totals.values()),
        "taken_bytes": sum(c.bytes for c in counters.values()),
        "dropped": sum(c.dropped for c in counters.values()),
    }


def main() -> int:
    """Parse ``[options] -- command...``, pump, print the summary as JSON."""
    argv = sys.argv[1:]
    split = argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--consumer", choices=("none", "full", "all"), default="none")
    parser.add_argument("--pipe-bytes", type=int, default=PIPE_BYTES)
    parser.add_argument("--max-line-bytes", type=int, default=65536)
    args = parser.parse_args(argv[:split])
    summary = anyio.run(_run, args, argv[split + 1 :], backend="asyncio")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
