"""Scale benchmark: 500 processes under one dsup, and under supervisord 4.3, in one run.

Starts each supervisor on the same fleet, 250 ``sleep`` processes and 250 that
ignore SIGTERM, with the same settings (``start_seconds`` = ``startsecs`` = 1,
``stop_timeout_seconds`` = ``stopwaitsecs``), and prints, side by side with ratios:
  - seconds until every process is RUNNING (target < 5 s, the 1 s start included),
  - idle CPU over the same window (dsup's periodic sweep included), in % of one
    core, from the supervisor process's own utime + stime,
  - RSS of the supervisor process at rest,
  - seconds for a SIGTERM'd supervisor to stop everything and exit (about one
    stop timeout: the stubborn half needs SIGKILL after it).
dsup runs as users run it: ``dsup run`` with no flag, stdout to /dev/null (not a
terminal, so plain lines). Readiness is read from ``dsup ctl --json status`` or
``supervisorctl status`` (every 0.25 s while starting); nothing polls either
supervisor during the idle window. supervisord comes from ``bench/.side-venv``
(installed on first use, see ``throughput.py``).

Run: .venv/bin/python bench/fleet_scale.py [--count 500] [--stop-timeout 3]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
from _dsup_driver import SLEEP, program_table, write_config
from throughput import SIDE_VENV, SUPERVISORD_REQ, ensure_supervisord

if TYPE_CHECKING:
    from collections.abc import Callable

DSUP = [sys.executable, "-m", "supervisor"]
START_DEADLINE_SECONDS = 120.0
SETTLE_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Figures:
    """What one supervisor did with the fleet."""

    all_running: float
    idle_cpu: float
    rss: int
    threads: int
    stop: float
    exit_code: int


def _dsup_config(directory: Path, count: int, stop_timeout: float) -> Path:
    half = count // 2
    stubborn = ["sh", "-c", "trap '' TERM; exec sleep 3600"]
    timing = {"start_seconds": 1.0, "stop_timeout": stop_timeout}
    return write_config(
        directory,
        program_table("sleeper", SLEEP, numprocs=count - half, **timing),
        program_table("stubborn", stubborn, numprocs=half, **timing),
    )


def _supervisord_config(directory: Path, count: int, stop_timeout: float) -> Path:
    half = count // 2
    sock = directory / "supervisor.sock"
    (directory / "logs").mkdir()
    programs = "".join(
        f"""
[program:{name}]
command={command}
numprocs={n}
process_name=%(program_name)s_%(process_num)s
startsecs=1
stopwaitsecs={stop_timeout:g}
autorestart=true
"""
        for name, command, n in (
            ("sleeper", "sleep 3600", count - half),
            ("stubborn", "sh -c \"trap '' TERM; exec sleep 3600\"", half),
        )
    )
    config = directory / "supervisord.conf"
    config.write_text(
        f"""[supervisord]
nodaemon=true
logfile={directory / "supervisord.log"}
pidfile={directory / "supervisord.pid"}
childlogdir={directory / "logs"}
minfds={count * 8 + 64}

[unix_http_server]
file={sock}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{sock}
{programs}""",
        encoding="utf-8",
    )
    return config


def _dsup_running(config: Path) -> int:
    result = subprocess.run(
        [*DSUP, "ctl", "-c", str(config), "--json", "status"],
        capture_output=True,
        check=False,
        timeout=30,
    )
    if result.returncode != 0:
        return -1
    report = json.loads(result.stdout)
    return sum(1 for p in report["processes"] if p["status"]["state"] == "RUNNING")


def _supervisord_running(config: Path) -> int:
    ctl = SIDE_VENV / "bin" / "supervisorctl"
    result = subprocess.run(
        [str(ctl), "-c", str(config), "status"],
        capture_output=True,
        check=False,
        timeout=30,
        text=True,
    )
    return sum(1 for line in result.stdout.splitlines() if " RUNNING " in line)


def _measure(
    argv: list[str], running: Callable[[], int], count: int, idle_seconds: float
) -> Figures:
    """Start a supervisor, wait for every process, watch it idle, SIGTERM it."""
    began = time.monotonic()
    sup = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    proc = psutil.Process(sup.pid)
    try:
        up = 0
        while up < count and time.monotonic() < began + START_DEADLINE_SECONDS:
            time.sleep(0.25)
            up = running()
        all_running = time.monotonic() - began
        if up < count:
            raise RuntimeError(f"{argv[0]}: only {up}/{count} RUNNING after 120 s")
        time.sleep(SETTLE_SECONDS)  # let the start-up burst settle before measuring idle
        cpu0 = proc.cpu_times()
        t0 = time.monotonic()
        time.sleep(idle_seconds)
        cpu1 = proc.cpu_times()
        idle_cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (time.monotonic() - t0)
        threads = proc.num_threads()
        rss = proc.memory_info().rss
        stop_began = time.monotonic()
        sup.send_signal(signal.SIGTERM)
        code = sup.wait(timeout=120)
        stop = time.monotonic() - stop_began
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
    return Figures(all_running, idle_cpu, rss, threads, stop, code)


def _leftovers(instance_file: Path) -> int:
    """Processes still carrying this node's instance marker."""
    marker = f"DSUP_INSTANCE={instance_file.read_text().strip()}"
    count = 0
    for proc in psutil.process_iter():
        try:
            environ = proc.environ()
        except psutil.Error:
            continue
        count += f"DSUP_INSTANCE={environ.get('DSUP_INSTANCE')}" == marker
    return count


def main() -> int:
    """Run both supervisors on the same fleet and print the figures side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--stop-timeout", type=float, default=3.0)
    parser.add_argument("--idle-seconds", type=float, default=45.0)
    args = parser.parse_args()
    exe = ensure_supervisord()
    with tempfile.TemporaryDirectory(prefix="dsup-scale-") as tmp:
        dsup_dir, sup_dir = Path(tmp) / "dsup", Path(tmp) / "supervisord"
        dsup_dir.mkdir()
        sup_dir.mkdir()
        config = _dsup_config(dsup_dir, args.count, args.stop_timeout)
        dsup = _measure(
            [*DSUP, "run", str(config)],
            lambda: _dsup_running(config),
            args.count,
            args.idle_seconds,
        )
        left = _leftovers(dsup_dir / "state" / "instance_id")
        sup_config = _supervisord_config(sup_dir, args.count, args.stop_timeout)
        sup = _measure(
            [str(exe), "-n", "-c", str(sup_config)],
            lambda: _supervisord_running(sup_config),
            args.count,
            args.idle_seconds,
        )
    version = SUPERVISORD_REQ.split("==")[1]
    print(
        f"\n{args.count} processes (half ignore SIGTERM), start_seconds = startsecs = 1, "
        f"stop timeout {args.stop_timeout:g} s, idle window {args.idle_seconds:g} s\n"
    )
    print(f"| | dsup run | supervisord {version} | dsup / supervisord |")
    print("| --- | --- | --- | --- |")
    rows = [
        ("all RUNNING", dsup.all_running, sup.all_running, "{:.2f} s"),
        ("idle CPU (% of one core)", dsup.idle_cpu * 100, sup.idle_cpu * 100, "{:.2f} %"),
        ("RSS at rest", dsup.rss / 2**20, sup.rss / 2**20, "{:.1f} MiB"),
        ("stop everything (SIGTERM)", dsup.stop, sup.stop, "{:.2f} s"),
    ]
    for name, mine, theirs, fmt in rows:
        ratio = mine / theirs if theirs else float("nan")
        print(f"| {name} | {fmt.format(mine)} | {fmt.format(theirs)} | {ratio:.2f}x |")
    print(f"| threads at rest | {dsup.threads} | {sup.threads} | |")
    print(f"| exit code | {dsup.exit_code} | {sup.exit_code} | |")
    print(f"\nprocesses of dsup's node left after its exit: {left} (must be 0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
