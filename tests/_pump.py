"""Helpers for the pump and log tests: a recording consumer and a real capture."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from supervisor.output.framing import decode_lines
from supervisor.output.logfile import RotatingLog, log_paths
from supervisor.output.pump import make_pipe, pump

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from supervisor.events import OutputChunk, Stream
    from supervisor.output.pump import DropTally, OutputConsumer

WORKERS = Path(__file__).parent / "workers"
STREAMS: tuple[Stream, Stream] = ("stdout", "stderr")


class Recorder:
    """An output consumer that records what it gets; capacity (bytes) from a callable."""

    def __init__(
        self, capacity: Callable[[], int] = lambda: 1 << 30, *, tally: DropTally | None = None
    ) -> None:
        self._capacity = capacity
        self.tally = tally
        self.events: list[OutputChunk] = []
        self.lines: list[str] = []
        self.dropped = 0
        self.dropped_bytes = 0
        self.got_lines = anyio.Event()

    def room(self, process: str) -> tuple[int, DropTally | None]:
        return self._capacity(), self.tally

    def deliver(self, chunk: OutputChunk) -> None:
        assert chunk.data.endswith(b"\n") or not chunk.data, "whole lines only"
        self.events.append(chunk)
        self.lines.extend(decode_lines(chunk.data))
        self.dropped += chunk.dropped
        self.dropped_bytes += chunk.dropped_bytes
        if chunk.data:
            self.got_lines.set()


@dataclass
class Capture:
    """What one capture of a worker's output produced."""

    totals: dict[str, int] = field(default_factory=dict)
    logs: dict[str, bytes] = field(default_factory=dict)
    exit_code: int | None = None


def spawn(
    script: str, *args: str, stdin: int = subprocess.DEVNULL
) -> tuple[subprocess.Popen[bytes], dict[Stream, int]]:
    """Start a worker from tests/workers with stdout and stderr on make_pipe pipes."""
    fds: dict[Stream, int] = {}
    ends: dict[Stream, int] = {}
    for stream in STREAMS:
        fds[stream], ends[stream] = make_pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-u", str(WORKERS / script), *args],
            stdin=stdin,
            stdout=ends["stdout"],
            stderr=ends["stderr"],
            start_new_session=True,
        )
    finally:
        for end in ends.values():
            os.close(end)
    return proc, fds


async def capture(
    tmp_path: Path,
    script: str,
    *args: str,
    consumers: Sequence[OutputConsumer | None] = (None, None),
    max_line_bytes: int = 65536,
    read_logs: bool = True,
    seconds: float = 20,
    log_max_bytes: int = 0,
) -> Capture:
    """Run a worker to the end with both streams pumped concurrently into logs.

    With ``read_logs=False`` the logs stay on disk (``log_paths(tmp_path, "w:0")``)
    instead of being read into ``Capture.logs``: for outputs too big to hold.
    ``log_max_bytes`` rotates them without backups, to bound the disk used.
    """
    proc, fds = spawn(script, *args)
    result = Capture()
    paths = log_paths(tmp_path, "w:0")
    try:
        with (
            RotatingLog(paths[0], max_bytes=log_max_bytes, backups=0) as out_log,
            RotatingLog(paths[1], max_bytes=log_max_bytes, backups=0) as err_log,
            anyio.fail_after(seconds),
        ):
            async with anyio.create_task_group() as tg:
                for stream, log, consumer in zip(
                    STREAMS, (out_log, err_log), consumers, strict=True
                ):
                    run = partial(
                        pump,
                        fds[stream],
                        process="w:0",
                        stream=stream,
                        log=log,
                        consumer=consumer,
                        max_line_bytes=max_line_bytes,
                    )
                    tg.start_soon(_store, result.totals, stream, run)
            result.exit_code = await anyio.to_thread.run_sync(proc.wait)
    finally:
        for fd in fds.values():
            os.close(fd)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for stream, path in zip(STREAMS, paths, strict=True):
        if read_logs:
            result.logs[stream] = path.read_bytes()
    return result


async def _store(totals: dict[str, int], stream: str, run: Callable[[], Awaitable[int]]) -> None:
    totals[stream] = await run()
