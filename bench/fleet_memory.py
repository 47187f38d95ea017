"""Where a resting node's memory goes: a fleet of N processes against one of 2.

Runs ``dsup run`` on the fleet of ``fleet_scale.py`` (N and then 2 processes), waits until
every process is RUNNING and a sweep has passed (``--settle``, as the idle window there),
and prints for each node, then per process (the difference over N - 2):
  - RSS from ``/proc/PID/status``: anonymous and file-backed, the largest file mappings,
    threads;
  - from inside the node, read after the RSS: glibc's heap in use and free (``mallinfo2``),
    pymalloc's blocks in use and free (``sys._debugmallocstats``), sqlite's own memory,
    modules loaded, and the objects that grew most per process (``sys.getsizeof`` by type).
The node is dsup's command line as users run it (stdout to /dev/null, no flag) started by
a wrapper that only adds a SIGUSR1 handler which writes those figures.

Run: .venv/bin/python bench/fleet_memory.py [--count 500] [--settle 35]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fleet_scale import DSUP, START_DEADLINE_SECONDS, _dsup_config, _dsup_running

# dsup's command line, plus a SIGUSR1 handler that writes what only the node can see.
_NODE = r"""
import collections, ctypes, gc, json, os, signal, sys

def dump(signum, frame):
    sys._debugmallocstats()  # first: the objects below would add to it
    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        ).split()]
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Info
    heap = libc.mallinfo2()
    sqlite = ctypes.CDLL("libsqlite3.so.0")
    sqlite.sqlite3_memory_used.restype = ctypes.c_int64
    sizes, counts = collections.Counter(), collections.Counter()
    for obj in gc.get_objects():
        sizes[type(obj).__name__] += sys.getsizeof(obj)
        counts[type(obj).__name__] += 1
    report = {
        "heap_in_use": heap.uordblks + heap.hblkhd,
        "heap_free": heap.fordblks,
        "sqlite": sqlite.sqlite3_memory_used(),
        "modules": len(sys.modules),
        "sizes": sizes,
        "counts": counts,
    }
    with open(os.environ["DSUP_BENCH_DUMP"], "w") as out:
        json.dump(report, out)

signal.signal(signal.SIGUSR1, dump)
from supervisor.cli import main
sys.exit(main(sys.argv[1:]))
"""
_PYMALLOC = {
    "pymalloc_in_use": re.compile(r"# bytes in allocated blocks\s+=\s+([\d,]+)"),
    "pymalloc_free_blocks": re.compile(r"# bytes in available blocks\s+=\s+([\d,]+)"),
    "pymalloc_free_pools": re.compile(r"unused pools \* \d+ bytes\s+=\s+([\d,]+)"),
}
_DUMP_DEADLINE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Figures:
    """One resting node, from outside (``status``, ``files``) and from inside."""

    status: dict[str, int]
    files: dict[str, int]
    inside: dict[str, int]
    sizes: dict[str, int]
    counts: dict[str, int]


def _status(pid: int) -> dict[str, int]:
    """The ``kB`` figures and the thread count of ``/proc/PID/status``."""
    figures: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "Threads"):
            figures[key] = int(value.split()[0])
    return figures


def _file_mappings(pid: int) -> collections.Counter[str]:
    """Resident kB per mapped file."""
    rss: collections.Counter[str] = collections.Counter()
    name = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if not fields[0].endswith(":"):
            name = fields[5] if len(fields) > 5 and fields[5].startswith("/") else ""
        elif fields[0] == "Rss:" and name:
            rss[Path(name).name] += int(fields[1])
    return rss


def _measure(directory: Path, count: int, settle: float) -> Figures:
    """Start a node of ``count`` processes, let it rest, read its figures, stop it."""
    directory.mkdir()
    config = _dsup_config(directory, count, 3.0)
    dump, err = directory / "dump.json", directory / "stderr.txt"
    env = {**os.environ, "DSUP_BENCH_DUMP": str(dump)}
    with err.open("wb") as stderr:
        node = subprocess.Popen(
            [DSUP[0], "-c", _NODE, "run", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )
    try:
        began = time.monotonic()
        while _dsup_running(config) < count:
            if time.monotonic() > began + START_DEADLINE_SECONDS:
                raise RuntimeError(f"not every process RUNNING after {START_DEADLINE_SECONDS} s")
            time.sleep(0.25)
        time.sleep(settle)
        status, files = _status(node.pid), _file_mappings(node.pid)
        node.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + _DUMP_DEADLINE_SECONDS
        while not dump.exists() or not dump.stat().st_size:
            if time.monotonic() > deadline:
                raise RuntimeError("the node wrote no figures")
            time.sleep(0.1)
        time.sleep(0.5)  # written in one go; let it be closed
        report = json.loads(dump.read_text())
        text = err.read_text(errors="replace")
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=120)
    inside = {k: int(report[k]) for k in ("heap_in_use", "heap_free", "sqlite", "modules")}
    for key, pattern in _PYMALLOC.items():
        found = pattern.search(text)
        inside[key] = int(found.group(1).replace(",", "")) if found else 0
    sizes = {str(k): int(v) for k, v in report["sizes"].items()}
    counts = {str(k): int(v) for k, v in report["counts"].items()}
    return Figures(status, dict(files), inside, sizes, counts)


def main() -> int:
    """Measure a big and a small node and print where the difference goes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--settle", type=float, default=35.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dsup-memory-") as tmp:
        big = _measure(Path(tmp) / "big", args.count, args.settle)
        small = _measure(Path(tmp) / "small", 2, args.settle)
    per = args.count - 2
    print(f"\n`dsup run` at rest, {args.count} and 2 processes, {args.settle:g} s after RUNNING\n")
    print(f"| | {args.count} processes | 2 processes | per process |")
    print("| --- | --- | --- | --- |")
    for name, key in (("RSS", "VmRSS"), ("anonymous", "RssAnon"), ("file-backed", "RssFile")):
        mine, theirs = big.status[key], small.status[key]
        print(f"| {name} | {mine:,} KiB | {theirs:,} KiB | {(mine - theirs) * 1024 / per:,.0f} B |")
    for name, key in (
        ("pymalloc in use", "pymalloc_in_use"),
        ("pymalloc free blocks, kept", "pymalloc_free_blocks"),
        ("pymalloc unused pools, kept", "pymalloc_free_pools"),
        ("glibc heap in use", "heap_in_use"),
        ("glibc heap free (trimmed pages too)", "heap_free"),
        ("sqlite", "sqlite"),
    ):
        mine, theirs = big.inside[key], small.inside[key]
        each = (mine - theirs) / per
        print(f"| {name} | {mine // 1024:,} KiB | {theirs // 1024:,} KiB | {each:,.0f} B |")
    print(f"| threads | {big.status['Threads']} | {small.status['Threads']} | |")
    print(f"| modules loaded | {big.inside['modules']} | {small.inside['modules']} | |")
    top = sorted(big.files.items(), key=lambda item: -item[1])[:8]
    print("\nlargest file mappings: " + ", ".join(f"{name} {kib} KiB" for name, kib in top))
    growth = sorted(((big.sizes[k] - small.sizes.get(k, 0)) / per, k) for k in big.sizes)[::-1]
    print("\nobjects per process, by type (sys.getsizeof, tracked by the gc):")
    for size, name in growth[:16]:
        count = (big.counts.get(name, 0) - small.counts.get(name, 0)) / per
        print(f"  {size:7.0f} B  {count:5.2f} x {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
