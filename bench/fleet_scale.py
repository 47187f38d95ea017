"""Scale benchmark: 500 processes under one dsup.

Starts ``dsup run`` on a generated config with 250 ``sleep`` processes and 250 that
ignore SIGTERM, and prints:
  - seconds until every process is RUNNING (target < 5 s, start_seconds = 1 included),
  - dsup's idle CPU over a 35 s window (one periodic sweep included), in % of
    one core (target < 2 %),
  - dsup's thread count and RSS while idle,
  - seconds for a SIGTERM'd dsup to stop everything (target: about one
    stop_timeout_seconds, because the stubborn half needs SIGKILL after it).
Readiness is read from ``dsup ctl --json status`` (polled every 0.25 s while starting);
nothing polls dsup during the idle window.

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
from pathlib import Path

import psutil

DSUP = [sys.executable, "-m", "supervisor"]


def _config(directory: Path, count: int, stop_timeout: float) -> Path:
    half = count // 2
    config = directory / "dsup.toml"
    config.write_text(
        f"""
[supervisor]
name = "bench"
state_dir = "state"

[programs.sleeper]
command = ["sleep", "3600"]
numprocs = {count - half}
start_seconds = 1.0
stop_timeout_seconds = {stop_timeout}

[programs.stubborn]
command = ["sh", "-c", "trap '' TERM; exec sleep 3600"]
numprocs = {half}
start_seconds = 1.0
stop_timeout_seconds = {stop_timeout}
""",
        encoding="utf-8",
    )
    return config


def _running(config: Path) -> int:
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--stop-timeout", type=float, default=3.0)
    parser.add_argument("--idle-seconds", type=float, default=35.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dsup-scale-") as tmp:
        config = _config(Path(tmp), args.count, args.stop_timeout)
        began = time.monotonic()
        dsup = subprocess.Popen(
            [*DSUP, "run", "--quiet", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        proc = psutil.Process(dsup.pid)
        try:
            deadline = began + 120
            running = 0
            while running < args.count and time.monotonic() < deadline:
                time.sleep(0.25)
                running = _running(config)
            all_running = time.monotonic() - began
            if running < args.count:
                print(f"only {running}/{args.count} RUNNING after 120 s")
                return 1
            time.sleep(2)  # let the start-up burst settle before measuring idle
            cpu0 = proc.cpu_times()
            t0 = time.monotonic()
            time.sleep(args.idle_seconds)
            cpu1 = proc.cpu_times()
            idle_cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (time.monotonic() - t0)
            threads = proc.num_threads()
            rss = proc.memory_info().rss
            stop_began = time.monotonic()
            dsup.send_signal(signal.SIGTERM)
            code = dsup.wait(timeout=120)
            stop_seconds = time.monotonic() - stop_began
        finally:
            if dsup.poll() is None:
                dsup.kill()
                dsup.wait()
            leftovers = _leftovers(Path(tmp) / "state" / "instance_id")
        print(f"processes                    {args.count}")
        print(f"all RUNNING after            {all_running:.2f} s (target < 5 s)")
        print(f"idle CPU of dsup             {idle_cpu * 100:.2f} % of one core (target < 2 %)")
        print(f"threads of dsup while idle   {threads}")
        print(f"RSS of dsup while idle       {rss / 2**20:.1f} MiB")
        print(
            f"stop everything (SIGTERM)    {stop_seconds:.2f} s "
            f"(stop_timeout_seconds = {args.stop_timeout}); exit code {code}"
        )
        print(f"processes left after exit    {leftovers} (must be 0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
