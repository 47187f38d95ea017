"""End to end: ``dsup run`` with its state_dir on a small tmpfs that fills up.

The real thing the unit tests imitate (sqlite's max_page_count, /dev/full): every
file of the state_dir hits ENOSPC. Mounting needs root (CAP_SYS_ADMIN): elsewhere
the test is skipped, saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from supervisor.state.ledger import Ledger
from tests._e2e import DEADLINE, WORKERS, ctl_run, dsup_run, write_config
from tests._wait import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(90)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[None]:
    path.mkdir(mode=0o700)
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("cannot mount a tmpfs here: no mount command")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(path: Path) -> None:
    """Write a file until the disk is full (bounded by the tmpfs's size)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            for _ in range(100_000):
                os.write(fd, b"\0" * 65536)
    finally:
        os.close(fd)


def _status(config: Path) -> dict[str, dict[str, object]]:
    done = ctl_run(config, "--json", "status")
    assert done.returncode == 0, done.stderr
    return {p["status"]["process"]: p["status"] for p in json.loads(done.stdout)["processes"]}


def test_a_full_disk_fails_no_command_and_no_process(tmp_path: Path) -> None:
    """On a full state_dir every ctl command exited 1 and a crashing program went FATAL."""
    state = tmp_path / "state"
    config = write_config(
        tmp_path,
        f"""[programs.tick]
command = [{sys.executable!r}, "-u", {str(WORKERS / "ctl_ticker.py")!r}, "0.01"]

[programs.again]
command = [{sys.executable!r}, {str(WORKERS / "child_exit.py")!r}, "3", "0.4"]
restart = "always"
start_seconds = 0.2
backoff_seconds = 0.05
""",
    )
    with small_tmpfs(state, "4m"), dsup_run(config) as node:
        wait_for(lambda: ctl_run(config, "status").returncode == 0, "dsup to answer")
        _fill(state / "filler")
        for args in (["status"], ["stop", "tick"], ["start", "tick"], ["restart", "tick"]):
            done = ctl_run(config, *args)
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        restarts = int(str(_status(config)["again:0"]["restarts"]))
        wait_for(
            lambda: int(str(_status(config)["again:0"]["restarts"])) >= restarts + 2,
            "the crashing program to be restarted on the full disk",
        )
        assert _status(config)["again:0"]["state"] != "FATAL"
        os.unlink(state / "filler")  # space returns
        assert ctl_run(config, "status").returncode == 0  # writes the late rows first

        def audited() -> set[tuple[str, str]]:
            with Ledger.open(state / "ledger.sqlite3") as ledger:
                return {(r.command, r.target) for r in ledger.audit_rows(limit=50)}

        # What the full disk refused was written once it had room again.
        assert {("stop", "tick"), ("start", "tick"), ("restart", "tick")} <= audited()
        _fill(state / "filler")  # full again for the shutdown and its last sweep
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=DEADLINE) == 0
        assert node.stderr is not None
        said = node.stderr.read().decode()
    assert "Traceback" not in said


def test_a_worker_reporting_on_a_full_disk_lives_on_and_its_result_is_kept(
    tmp_path: Path,
) -> None:
    """On a full state_dir a worker_sdk result raised in dsup: the worker's channel ended
    and the result was lost."""
    state = tmp_path / "state"
    config = write_config(
        tmp_path,
        f"""[programs.w]
command = [{sys.executable!r}, "-u", {str(WORKERS / "sdk_worker.py")!r}, "report", "ask"]
autostart = false
""",
    )
    with small_tmpfs(state, "4m"), dsup_run(config) as node:
        wait_for(lambda: ctl_run(config, "status").returncode == 0, "dsup to answer")
        _fill(state / "filler")
        assert ctl_run(config, "start", "w").returncode == 0
        # Its question comes after its result on the channel: the result was handled.
        wait_for(lambda: "Keep going?" in ctl_run(config, "asks").stdout, "the worker's question")
        assert _status(config)["w:0"]["state"] == "RUNNING"
        os.unlink(state / "filler")  # space returns
        assert ctl_run(config, "status").returncode == 0  # writes the late rows first
        done = ctl_run(config, "--json", "results", "w")
        assert done.returncode == 0, done.stderr
        (result,) = json.loads(done.stdout)["results"]
        assert result["text"] == "did 3 rows"
        assert _status(config)["w:0"]["state"] == "RUNNING"
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=DEADLINE) == 0
        assert node.stderr is not None
        said = node.stderr.read().decode()
    assert "Traceback" not in said
