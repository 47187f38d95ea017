"""Log capture benchmark: dsup's pump and console against supervisord 4.3, ``cat`` and ``tee``.

Run: ``.venv/bin/python bench/throughput.py`` (add ``--memory`` for the memory
runs). Workload: one child writes 1,000,000 lines
of 100 B (100 MB) to stdout, captured into a log file; median of 3 runs. The
``dsup run`` rows print every line too (to a file, to a pipe ``cat`` drains,
or as JSON), beside ``tee`` writing every byte to a log and to a file: coreutils'
(8 KiB reads) and ``bench/_tee.py`` (1 MiB reads, with and without a prefix per
line), the least a supervisor that keeps a log and prints every line can spend.

For each method the harness starts the supervisor, lets the child block on a
FIFO, takes the supervisor's CPU time, opens the gate and then only watches the
log file's size (it never talks to the measured process while output flows).
CPU is the supervisor's own (the child's is excluded), from
``/proc/PID/task/*/schedstat`` (ns) or ``wait4`` for ``cat``; peak RSS is
``VmHWM`` (``ru_maxrss`` for ``cat``). supervisord is installed on first use
into ``bench/.side-venv`` with pip (``supervisor==4.3.0``): it cannot share
dsup's venv, both are imported as ``supervisor``.

``--memory`` runs dsup on a child writing 200 MiB with no newline and on a 1 GB
flood of lines, with a consumer that takes every line, sampling RSS over time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SIDE_VENV = HERE / ".side-venv"
SUPERVISORD_REQ = "supervisor==4.3.0"
FLOOD = HERE / "_flood.py"
TEE = HERE / "_tee.py"
DRIVER = HERE / "_dsup_driver.py"
SETTLE_SECONDS = 0.3
POLL_SECONDS = 0.002
DEADLINE_SECONDS = 300.0
STILL_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured run."""

    seconds: float
    cpu_seconds: float
    peak_rss: int
    nbytes: int
    shown: int = -1
    dropped: int = 0

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / 1e6

    @property
    def cpu_per_100mb(self) -> float:
        return self.cpu_seconds * 100e6 / self.nbytes


def cpu_seconds(pid: int) -> float:
    """On-CPU time of every thread of a process, from schedstat (nanoseconds)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1e9


def peak_rss(pid: int) -> int:
    """Peak resident set size of a process in bytes (VmHWM)."""
    return _status_kb(pid, "VmHWM") * 1024


def rss(pid: int) -> int:
    """Current resident set size of a process in bytes (VmRSS)."""
    return _status_kb(pid, "VmRSS") * 1024


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise LookupError(f"{key} not in /proc/{pid}/status")


def flood_argv(gate: Path, *extra: str) -> list[str]:
    """The child every method runs."""
    return [sys.executable, str(FLOOD), "--gate", str(gate), *extra]


def release(gate: Path, before_go: Callable[[], None]) -> float:
    """Wait for the child to block on the gate, settle, call ``before_go``, open it."""
    with open(gate, "wb") as g:  # returns once the child opened its end
        time.sleep(SETTLE_SECONDS)
        before_go()
        g.write(b"g")
    return time.perf_counter()


def wait_for_size(path: Path, nbytes: int, alive: Callable[[], bool]) -> float:
    """Poll a file's size (never the supervisor) until it holds ``nbytes``."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        try:
            if path.stat().st_size >= nbytes:
                return time.perf_counter()
        except FileNotFoundError:
            pass
        if not alive():
            raise RuntimeError(f"the supervisor ended before {path} reached {nbytes} bytes")
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"{path} did not reach {nbytes} bytes in {DEADLINE_SECONDS} s")


def run_cat(tmp: Path, workload: list[str], nbytes: int) -> Sample:
    """``child | cat > file``: the practical limit.

    The harness holds a copy of the pipe's write end, so ``cat`` is still alive
    (no EOF) when the log is complete and is measured like the others.
    """
    gate, log = _fresh(tmp)
    r, w = os.pipe()
    with open(log, "wb") as out:
        child = subprocess.Popen(flood_argv(gate, *workload), stdout=w)
        cat = subprocess.Popen(["cat"], stdin=r, stdout=out)
    os.close(r)
    try:
        return _measure_pid(cat, gate, log, nbytes)
    finally:
        os.close(w)
        child.wait(30)
        cat.wait(30)


def run_tee(tmp: Path, workload: list[str], nbytes: int, *argv: str) -> Sample:
    """``child | TEE log > file``: every byte written to a log and to stdout.

    ``argv`` is the tee: coreutils ``tee`` by default (8 KiB reads), or
    ``bench/_tee.py`` (1 MiB reads, optionally prefixing every line), the least
    a supervisor that keeps a log and prints every line can spend. Measured
    like ``cat``.
    """
    gate, log = _fresh(tmp)
    r, w = os.pipe()
    with open(tmp / "tee.out", "wb") as out:
        child = subprocess.Popen(flood_argv(gate, *workload), stdout=w)
        tee = subprocess.Popen([*(argv or ("tee",)), str(log)], stdin=r, stdout=out)
    os.close(r)
    try:
        sample = _measure_pid(tee, gate, log, nbytes, printed=tmp / "tee.out")
    finally:
        os.close(w)
        child.wait(30)
        tee.wait(30)
    return Sample(sample.seconds, sample.cpu_seconds, sample.peak_rss, nbytes, nbytes // 100, 0)


def ensure_supervisord() -> Path:
    """Install supervisord into the side venv on first use; return its path."""
    exe = SIDE_VENV / "bin" / "supervisord"
    if not exe.exists():
        print(f"installing {SUPERVISORD_REQ} into {SIDE_VENV} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(SIDE_VENV)], check=True)
        pip = [str(SIDE_VENV / "bin" / "pip"), "install", "-q", SUPERVISORD_REQ]
        subprocess.run(pip, check=True)
    return exe


def run_supervisord(tmp: Path, workload: list[str], nbytes: int) -> Sample:
    """supervisord 4.3 with one program, no log rotation."""
    gate, log = _fresh(tmp)
    conf = tmp / "supervisord.conf"
    conf.write_text(
        "[supervisord]\nnodaemon=true\n"
        f"logfile={tmp / 'supervisord.log'}\npidfile={tmp / 'supervisord.pid'}\n"
        "[program:flood]\n"
        f"command={' '.join(flood_argv(gate, *workload))}\n"
        "autostart=true\nautorestart=false\nstartsecs=0\n"
        f"stdout_logfile={log}\nstdout_logfile_maxbytes=0\n"
        f"stderr_logfile={tmp / 'flood.err.log'}\nstderr_logfile_maxbytes=0\n"
    )
    exe = ensure_supervisord()
    sup = subprocess.Popen([str(exe), "-n", "-c", str(conf)], stdout=subprocess.DEVNULL)
    try:
        return _measure_pid(sup, gate, log, nbytes)
    finally:
        sup.send_signal(signal.SIGTERM)
        sup.wait(30)


def run_dsup(tmp: Path, workload: list[str], nbytes: int, *options: str) -> Sample:
    """dsup's pump on a real child into a real RotatingLog (bench/_dsup_driver.py)."""
    gate, _ = _fresh(tmp)
    log_dir = tmp / "dsup-logs"
    log = log_dir / "flood-0.out.log"
    log.unlink(missing_ok=True)
    argv = [sys.executable, str(DRIVER), "--log-dir", str(log_dir), *options]
    driver = subprocess.Popen(
        [*argv, "--", *flood_argv(gate, *workload)], stdout=subprocess.PIPE, cwd=ROOT
    )
    try:
        return _measure_pid(driver, gate, log, nbytes)
    finally:
        out, _ = driver.communicate(timeout=60)
        summary = json.loads(out.decode().splitlines()[-1])
        if summary["bytes"] != nbytes or summary["exit"] != 0:
            raise RuntimeError(f"dsup driver: unexpected summary {summary}")


def run_dsup_run(tmp: Path, workload: list[str], nbytes: int, *options: str) -> Sample:
    """The whole ``dsup run --quiet`` on a config with one program."""
    conf, log = _dsup_config(tmp, workload)
    dsup = subprocess.Popen(
        [_dsup_exe(), "run", "--quiet", *options, str(conf)], stdout=subprocess.DEVNULL, cwd=ROOT
    )
    try:
        return _measure_pid(dsup, tmp / "gate", log, nbytes)
    finally:
        dsup.send_signal(signal.SIGTERM)
        dsup.wait(30)


def run_dsup_console(
    tmp: Path, workload: list[str], nbytes: int, *, to: str, json_logs: bool
) -> Sample:
    """The whole ``dsup run`` as users run it: every line printed to stdout.

    ``to`` is ``file`` (stdout redirected to a file) or ``pipe`` (stdout is a
    pipe that ``cat`` drains into a file). The run ends when the log file is
    complete and the console's output stopped growing; the printed lines and
    the lines the console reported dropped are counted from that output.
    """
    conf, log = _dsup_config(tmp, workload)
    printed = tmp / "console.out"
    argv = [_dsup_exe(), "run", *(["--json-logs"] if json_logs else []), str(conf)]
    with open(printed, "wb") as out:
        if to == "file":
            dsup = subprocess.Popen(argv, stdout=out, cwd=ROOT)
            reader = None
        else:
            reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=out)
            assert reader.stdin is not None
            dsup = subprocess.Popen(argv, stdout=reader.stdin, cwd=ROOT)
            reader.stdin.close()
    try:
        sample = _measure_pid(dsup, tmp / "gate", log, nbytes, printed=printed)
    finally:
        dsup.send_signal(signal.SIGTERM)
        dsup.wait(30)
        if reader is not None:
            reader.wait(30)
    shown, dropped = _count_console(printed, json_logs)
    if shown + dropped != nbytes // 100:
        raise RuntimeError(f"console printed {shown} + dropped {dropped} of {nbytes // 100} lines")
    return Sample(sample.seconds, sample.cpu_seconds, sample.peak_rss, nbytes, shown, dropped)


def _count_console(printed: Path, json_logs: bool) -> tuple[int, int]:
    """Output lines of ``flood:0`` printed, and lines reported dropped, in a console's output."""
    shown = dropped = 0
    with open(printed, "rb") as f:
        for line in f:
            if json_logs:
                if b'"type": "output"' in line:
                    shown += 1
                elif b'"type": "dropped"' in line:
                    dropped += json.loads(line)["lines"]
            elif line.startswith(b"flood:0 | "):
                shown += 1
            elif line.startswith(b"flood:0 [") and b"dropped]" in line:
                dropped += int(line.split()[1][1:].replace(b",", b""))
    return shown, dropped


def _dsup_exe() -> str:
    return str(Path(sys.executable).with_name("dsup"))


def _dsup_config(tmp: Path, workload: list[str]) -> tuple[Path, Path]:
    """A config with one program flooding; return it and the program's log path."""
    gate, _ = _fresh(tmp)
    state = tmp / "dsup-state"
    shutil.rmtree(state, ignore_errors=True)
    conf = tmp / "dsup.toml"
    command = ", ".join(json.dumps(arg) for arg in flood_argv(gate, *workload))
    conf.write_text(
        f'[supervisor]\nname = "bench"\nstate_dir = {json.dumps(str(state))}\n'
        f'[programs.flood]\ncommand = [{command}]\nrestart = "never"\n'
        "log_max_bytes = 4000000000\n"
    )
    return conf, state / "logs" / "flood-0.out.log"


def _measure_pid(
    proc: subprocess.Popen[bytes], gate: Path, log: Path, nbytes: int, printed: Path | None = None
) -> Sample:
    start_cpu: list[float] = []
    t0 = release(gate, lambda: start_cpu.append(cpu_seconds(proc.pid)))
    t1 = wait_for_size(log, nbytes, lambda: proc.poll() is None)
    if printed is not None:
        t1 = max(t1, wait_still(printed))
    cpu = cpu_seconds(proc.pid) - start_cpu[0]
    return Sample(t1 - t0, cpu, peak_rss(proc.pid), nbytes)


def wait_still(path: Path) -> float:
    """Wait until a file stopped growing for ``STILL_SECONDS``; return when it last grew."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    size, grew = -1, time.perf_counter()
    while time.monotonic() < deadline:
        now_size = path.stat().st_size
        now = time.perf_counter()
        if now_size != size:
            size, grew = now_size, now
        elif now - grew >= STILL_SECONDS:
            return grew
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"{path} still grows after {DEADLINE_SECONDS} s")


def _fresh(tmp: Path) -> tuple[Path, Path]:
    gate = tmp / "gate"
    gate.unlink(missing_ok=True)
    os.mkfifo(gate)
    log = tmp / "flood.out.log"
    log.unlink(missing_ok=True)
    return gate, log


def median_sample(samples: list[Sample]) -> Sample:
    """Median of each figure over the runs (the fewest lines printed, the most dropped)."""
    return Sample(
        statistics.median(s.seconds for s in samples),
        statistics.median(s.cpu_seconds for s in samples),
        int(statistics.median(s.peak_rss for s in samples)),
        samples[0].nbytes,
        min(s.shown for s in samples),
        max(s.dropped for s in samples),
    )


def throughput(runs: int, lines: int, only: str) -> None:
    """Measure every method ``runs`` times and print the table and the ratios."""
    nbytes = lines * 100
    workload = ["--count", str(lines), "--size", "100"]
    methods: dict[str, Callable[[Path], Sample]] = {
        "cat through a pipe (practical limit)": lambda t: run_cat(t, workload, nbytes),
        "coreutils tee to a log and to stdout, a file (8 KiB reads)": lambda t: run_tee(
            t, workload, nbytes
        ),
        "floor: tee with 1 MiB reads (bench/_tee.py), no prefix": lambda t: run_tee(
            t, workload, nbytes, sys.executable, str(TEE)
        ),
        "floor: tee with 1 MiB reads, every line prefixed": lambda t: run_tee(
            t, workload, nbytes, sys.executable, str(TEE), "--prefix", "flood:0 | "
        ),
        f"supervisord {SUPERVISORD_REQ.split('==')[1]}": lambda t: run_supervisord(
            t, workload, nbytes
        ),
        "dsup pump, log only (no line consumer)": lambda t: run_dsup(t, workload, nbytes),
        "dsup pump, consumer full (lines counted)": lambda t: run_dsup(
            t, workload, nbytes, "--consumer", "full"
        ),
        "dsup pump, consumer takes every line": lambda t: run_dsup(
            t, workload, nbytes, "--consumer", "all"
        ),
        "dsup pump, log only, default 64 KiB pipe": lambda t: run_dsup(
            t, workload, nbytes, "--pipe-bytes", "0"
        ),
        "dsup run --quiet (whole supervisor)": lambda t: run_dsup_run(t, workload, nbytes),
        "dsup run, default, stdout to a file": lambda t: run_dsup_console(
            t, workload, nbytes, to="file", json_logs=False
        ),
        "dsup run, default, stdout to a pipe (cat drains it)": lambda t: run_dsup_console(
            t, workload, nbytes, to="pipe", json_logs=False
        ),
        "dsup run --json-logs, stdout to a file": lambda t: run_dsup_console(
            t, workload, nbytes, to="file", json_logs=True
        ),
    }
    methods = {k: v for k, v in methods.items() if only in k or k.startswith("supervisord")}
    ensure_supervisord()
    results: dict[str, Sample] = {}
    with tempfile.TemporaryDirectory(prefix="dsup-bench-") as tmp:
        for name, method in methods.items():
            samples = []
            for _ in range(runs):
                samples.append(method(Path(tmp)))
                print(f"  {name}: {samples[-1].mb_per_s:,.0f} MB/s", file=sys.stderr)
            results[name] = median_sample(samples)
    print(f"\n{lines:,} lines of 100 B ({nbytes / 1e6:,.0f} MB), median of {runs}\n")
    print("| method | MB/s | CPU s per 100 MB | peak RSS | lines printed / dropped |")
    print("| --- | --- | --- | --- | --- |")
    for name, s in results.items():
        shown = f"{s.shown:,} / {s.dropped:,}" if s.shown >= 0 else "-"
        print(
            f"| {name} | {s.mb_per_s:,.0f} | {s.cpu_per_100mb:.3f} | {s.peak_rss / 1e6:.0f} MB"
            f" | {shown} |"
        )
    sup = results[next(n for n in results if n.startswith("supervisord"))]
    print("\nratios against supervisord (issue targets for the default console: speed >= 1.2,")
    print("CPU per MB <= 0.8; the floor rows are the least a program that keeps a log and prints")
    print("every line can spend: the same bytes written twice, with or without a prefix per line)")
    for name, s in results.items():
        if not name.startswith("supervisord"):
            speed = s.mb_per_s / sup.mb_per_s
            cpu = s.cpu_per_100mb / sup.cpu_per_100mb
            print(f"- {name}: speed x{speed:.2f}, CPU per MB x{cpu:.2f}")


def memory(flood_bytes: int, noline_bytes: int) -> None:
    """Sample dsup's RSS over a long line with no newline and over a big flood."""
    cases = {
        f"{noline_bytes / 2**20:,.0f} MiB, no newline": (
            ["--mode", "noline", "--count", str(noline_bytes)],
            noline_bytes,
        ),
        f"{flood_bytes / 1e9:,.1f} GB of 100 B lines": (
            ["--count", str(flood_bytes // 100), "--size", "100"],
            flood_bytes // 100 * 100,
        ),
    }
    with tempfile.TemporaryDirectory(prefix="dsup-bench-") as tmp:
        for name, (workload, nbytes) in cases.items():
            samples, peak = _sample_rss(Path(tmp), workload, nbytes)
            print(f"\n{name}, consumer takes every line: peak RSS {peak / 1e6:.1f} MB")
            print(f"({len(samples)} samples of VmRSS, every 50 ms)")
            print("| progress | RSS |\n| --- | --- |")
            for frac in (0.1, 0.25, 0.5, 0.75, 1.0):
                size, r = next(((s, r) for s, r in samples if s >= frac * nbytes), samples[-1])
                print(f"| {size / 1e6:,.0f} MB written | {r / 1e6:.1f} MB |")


def _sample_rss(tmp: Path, workload: list[str], nbytes: int) -> tuple[list[tuple[int, int]], int]:
    """Run the driver on a workload; return (log size, RSS) samples and the peak RSS."""
    gate, _ = _fresh(tmp)
    log_dir = tmp / "dsup-logs"
    log = log_dir / "flood-0.out.log"
    log.unlink(missing_ok=True)
    argv = [sys.executable, str(DRIVER), "--log-dir", str(log_dir), "--consumer", "all"]
    driver = subprocess.Popen(
        [*argv, "--", *flood_argv(gate, *workload)], stdout=subprocess.PIPE, cwd=ROOT
    )
    samples: list[tuple[int, int]] = []
    release(gate, lambda: None)
    deadline = time.monotonic() + DEADLINE_SECONDS
    size = peak = 0
    while size < nbytes and driver.poll() is None and time.monotonic() < deadline:
        size = log.stat().st_size if log.exists() else 0
        samples.append((size, rss(driver.pid)))
        peak = peak_rss(driver.pid)
        time.sleep(0.05)
    out, _ = driver.communicate(timeout=60)
    summary = json.loads(out.decode().splitlines()[-1])
    print(f"  driver summary: {summary}", file=sys.stderr)
    return samples, peak


def main() -> int:
    """Parse the arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--only", default="", help="run the methods whose name has this text")
    parser.add_argument("--memory", action="store_true", help="run the memory cases instead")
    parser.add_argument("--flood-bytes", type=int, default=1_000_000_000)
    parser.add_argument("--noline-bytes", type=int, default=200 * 2**20)
    args = parser.parse_args()
    if args.memory:
        memory(args.flood_bytes, args.noline_bytes)
    else:
        throughput(args.runs, args.lines, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
