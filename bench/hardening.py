"""Figures for the hardening of the core: tampered logs under a flood, follower memory.

Run: ``.venv/bin/python bench/hardening.py``. Prints, for ``rm``, ``mv`` and
``rm -rf`` of a log while ``tests/workers/out_flood.py`` floods it (the pump and
``RotatingLog`` of dsup, 1 MiB files and 2 backups, then without rotation, where
only the once-a-second check finds the change): the bytes the worker wrote,
the bytes the pump drained, the bytes no file took, and how long after the
tampering the log path existed again. Then the memory one stalled ``tail -f``
buffer holds (tracemalloc) at its 4 MiB bound, for ASCII and for emoji lines.
Last, a real ``dsup run`` whose control socket holds 64 ``tail -f`` followers
and 64 idle connections: how many of 500 commands (each on a new connection,
half of them from clients that leave without reading the answer) are refused,
and whether ``shutdown`` gets through.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import anyio

from supervisor.commands.follow_buffer import FollowBuffer
from supervisor.commands.reports import LogLines
from supervisor.commands.tail import FOLLOW_BUFFER_BYTES
from supervisor.control.client import Failed, call, checked, connect, send
from supervisor.output.logfile import RotatingLog
from supervisor.output.pump import make_pipe, pump

ROOT = Path(__file__).resolve().parent.parent
FLOOD = ROOT / "tests" / "workers" / "out_flood.py"


async def tampered(how: str, base: Path, max_bytes: int) -> tuple[int, int, int, float]:
    """Flood a log, tamper with it once; (wrote, drained, not taken, seconds to reopen)."""
    logs = base / f"{how.replace(' ', '')}-{max_bytes}"
    path = logs / "w-0.out.log"
    read_fd, write_fd = make_pipe()
    err_r, err_w = os.pipe()
    proc = subprocess.Popen(  # noqa: ASYNC220 - a spawn, measured around, not during
        [sys.executable, "-u", str(FLOOD)], stdin=subprocess.PIPE, stdout=write_fd, stderr=err_w
    )
    os.close(write_fd)
    os.close(err_w)
    assert proc.stdin is not None
    drained: list[int] = []
    with RotatingLog(path, max_bytes=max_bytes, backups=2) as log:
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                drained.append(
                    await pump(
                        read_fd,
                        process="w:0",
                        stream="stdout",
                        log=log,
                        consumer=None,
                        max_line_bytes=4096,
                    )
                )

            tg.start_soon(run)
            while not (path.exists() and path.stat().st_size > 256 * 1024):  # noqa: ASYNC110
                await anyio.sleep(0.01)
            if how == "rm":
                path.unlink()
            elif how == "mv":
                path.rename(logs / "w-0.out.log-moved")
            else:
                shutil.rmtree(logs)
            tampered_at = time.monotonic()
            while not path.exists():  # noqa: ASYNC110 - another process's file
                await anyio.sleep(0.005)
            reopened = time.monotonic() - tampered_at
            await anyio.sleep(0.2)  # flood on for a while after
            proc.stdin.close()
            await anyio.to_thread.run_sync(proc.wait)
        log.close()
        not_taken = drained[0] - log.written
    wrote = int(os.read(err_r, 100).split()[1])
    os.close(err_r)
    os.close(read_fd)
    return wrote, drained[0], not_taken, reopened


def follower_mib(text: str) -> float:
    """MiB one stalled follow buffer holds when its watchers fill it to the bound."""
    buffer = FollowBuffer(max_bytes=FOLLOW_BUFFER_BYTES)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    n = 0
    while (room := buffer.room()) > 0:
        lines = tuple(f"{i} {text * 4}" for i in range(n, n + min(room, 100)))
        n += len(lines)
        buffer.put(LogLines(process="w:0", stream="stdout", lines=lines))
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    buffer.close()
    return held / 2**20


def crowded_socket(base: Path) -> tuple[int, int, str]:
    """(commands refused, commands sent, shutdown's answer) with the socket crowded."""
    ticker = ROOT / "tests" / "workers" / "ctl_ticker.py"
    config = base / "dsup.toml"
    config.write_text(
        '[supervisor]\nname = "bench"\nstate_dir = "state"\n\n'
        f"[programs.tick]\ncommand = {json.dumps([sys.executable, '-u', str(ticker), '0.05'])}\n",
        encoding="utf-8",
    )
    path = base / "state" / "control.sock"
    node = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "run", "--quiet", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.ExitStack() as held:
            for _ in range(64):  # followers
                sock, reader = held.enter_context(connect(path, 10.0))
                send(sock, "tail", {"target": "tick", "follow": True})
                checked(reader.message())
            for _ in range(64):  # idle after one command
                sock, reader = held.enter_context(connect(path, 10.0))
                send(sock, "status", {})
                checked(reader.message())
            refused = 0
            for i in range(500):
                if i % 2:
                    try:
                        call(path, "status", {}, timeout=10.0)
                    except Failed:
                        refused += 1
                else:  # asks and leaves without its answer
                    with socket.socket(socket.AF_UNIX) as gone:
                        gone.connect(str(path))
                        gone.sendall(b'{"id": 1, "cmd": "status", "args": {}}\n')
            answer = call(path, "shutdown", {}, timeout=10.0)
        node.wait(timeout=60)
        return refused, 250, "ok" if isinstance(answer, dict) else repr(answer)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()


async def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="dsup-harden-"))
    try:
        print("log tampered under a flood (1 MiB files and 2 backups, or no rotation):")
        for how, max_bytes in [(h, m) for m in (1 << 20, 0) for h in ("rm", "mv", "rm -rf")]:
            wrote, drained, lost, reopened = await tampered(how, base, max_bytes)
            mode = "rotating" if max_bytes else "no rotation"
            print(
                f"  {how:7} {mode:11} wrote {wrote / 1e6:7.1f} MB"
                f"  drained {drained / 1e6:7.1f} MB  undrained {wrote - drained} B"
                f"  taken by no file {lost} B"
                f"  path back after {reopened:.2f} s"
            )
    finally:
        shutil.rmtree(base)
    print(f"stalled tail -f buffer at its {FOLLOW_BUFFER_BYTES / 2**20:g} MiB bound:")
    for label, text in (("ascii", "plain ascii text"), ("emoji", "emoji \U0001f600\U0001f680")):
        print(f"  {label}: {follower_mib(text):.2f} MiB held")
    base = Path(tempfile.mkdtemp(prefix="dsup-crowd-"))
    try:
        refused, asked, shutdown = crowded_socket(base)
    finally:
        shutil.rmtree(base)
    print("control socket with 64 tail -f and 64 idle connections:")
    print(f"  {refused} of {asked} commands refused; shutdown: {shutdown}")


if __name__ == "__main__":
    anyio.run(main)
