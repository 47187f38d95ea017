"""Oneshot tasks through dsup against ``xargs -P``: tasks per second and overhead per task.

Runs a real ``dsup run`` with one oneshot program (``/bin/echo {task}`` by default,
``concurrency = 8``), submits N tasks with the request ``dsup ctl task`` sends (on one
control connection, so the figure is dsup's, not Python's start-up), waits until all
are done, and compares with ``xargs -P 8 -n 1`` running the same worker on the same
texts. Also times a few real ``dsup ctl task`` invocations, whose cost is mostly the
Python start-up of ctl itself. Prints figures; asserts nothing about speed.

    .venv/bin/python bench/tasks.py [--tasks 1000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from supervisor.control.client import checked, connect, send

_DEADLINE = 600.0
# Listing 1,000 tasks costs dsup some CPU: looked at this often, it adds at most this
# much to the measured time.
_POLL_SECONDS = 0.25


def _config(directory: Path, worker: list[str], concurrency: int, backlog: int) -> Path:
    path = directory / "dsup.toml"
    path.write_text(
        '[supervisor]\nname = "bench"\nstate_dir = "state"\n\n'
        f"[programs.trivial]\ncommand = {json.dumps([*worker, '{task}'])}\n"
        f'tasks = "oneshot"\nconcurrency = {concurrency}\ntask_backlog = {backlog}\n',
        encoding="utf-8",
    )
    return path


def _wait_socket(path: Path, node: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        if node.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("dsup did not start")
        time.sleep(0.05)


def _through_dsup(config: Path, n: int) -> tuple[float, float, list[str]]:
    """Seconds from the first submission to the last task done; dsup's CPU seconds."""
    sock = config.parent / "state" / "control.sock"
    node = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "run", "--quiet", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_socket(sock, node)
        proc = psutil.Process(node.pid)
        cpu_before = sum(proc.cpu_times()[:2])
        start = time.perf_counter()
        with connect(sock, _DEADLINE) as (s, reader):
            for i in range(n):
                send(s, "task", {"program": "trivial", "text": f"task {i}"})
                checked(reader.message())
            deadline = time.monotonic() + _DEADLINE
            while True:
                send(s, "tasks", {"limit": 1000})
                listed = checked(reader.message())["result"]
                assert isinstance(listed, dict)
                tasks = listed["tasks"]
                assert isinstance(tasks, list)
                states = [t["state"] for t in tasks]
                if all(state != "queued" and state != "running" for state in states):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("tasks did not finish in time")
                time.sleep(_POLL_SECONDS)
        elapsed = time.perf_counter() - start
        cpu = sum(proc.cpu_times()[:2]) - cpu_before
        ctl = _ctl_invocations(config, 20)
        return elapsed, cpu, [*sorted(set(states)), f"ctl {ctl * 1000:.0f} ms"]
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=60)


def _ctl_invocations(config: Path, n: int) -> float:
    """Seconds per real ``dsup ctl task`` (a Python process each)."""
    start = time.perf_counter()
    for i in range(n):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "supervisor",
                "ctl",
                "-c",
                str(config),
                "task",
                "trivial",
                str(i),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return (time.perf_counter() - start) / n


def _through_xargs(worker: list[str], n: int, concurrency: int) -> float:
    texts = "".join(f"task {i}\0" for i in range(n)).encode()
    start = time.perf_counter()
    subprocess.run(
        ["xargs", "-0", "-P", str(concurrency), "-n", "1", *worker],
        input=texts,
        stdout=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--worker", nargs="+", default=["/bin/echo"], help="argv before {task}")
    args = parser.parse_args()
    n = args.tasks
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp), args.worker, args.concurrency, n + 100)
        dsup_s, dsup_cpu, notes = _through_dsup(config, n)
    xargs_s = _through_xargs(args.worker, n, args.concurrency)
    print(f"{n} oneshot tasks of {' '.join(args.worker)}, concurrency {args.concurrency}")
    print(f"  dsup:  {dsup_s:7.2f} s  {n / dsup_s:8.1f} tasks/s   (final states: {notes[:-1]})")
    print(f"  xargs: {xargs_s:7.2f} s  {n / xargs_s:8.1f} tasks/s")
    print(
        f"  dsup overhead per task: {(dsup_s - xargs_s) / n * 1000:.2f} ms wall, "
        f"{dsup_cpu / n * 1000:.2f} ms of dsup's CPU; ratio dsup/xargs {dsup_s / xargs_s:.1f}x"
    )
    print(f"  one real `dsup ctl task` invocation: {notes[-1].split()[1]} ms (Python start-up)")
    print(f"  (cores: {os.cpu_count()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
