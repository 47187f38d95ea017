"""End to end: a dsup killed with SIGKILL leaves orphans; the next dsup ends them.

Runs the real ``dsup run`` as a subprocess on a temporary config and state_dir.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import psutil
import pytest

from supervisor.state.ledger import Ledger
from tests._e2e import (
    DEADLINE,
    WORKERS,
    alive,
    ctl_run,
    dsup_run,
    kill_all,
    read_tree,
    write_config,
)
from tests._wait import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(90)


def _config(tmp_path: Path, pids_file: Path) -> Path:
    worker = str(WORKERS / "e2e_spawner.py")
    return write_config(
        tmp_path,
        f"""[programs.spawner]
command = [{sys.executable!r}, {worker!r}, {str(pids_file)!r}]
restart = "never"
stop_timeout_seconds = 2.0
""",
    )


@pytest.fixture
def decoy() -> Iterator[psutil.Process]:
    """A process started outside dsup, which must survive every sweep."""
    popen = subprocess.Popen(
        [sys.executable, "-c", "import time\nwhile True: time.sleep(60)"],
        stdin=subprocess.DEVNULL,
    )
    try:
        yield psutil.Process(popen.pid)
    finally:
        popen.kill()
        popen.wait(timeout=DEADLINE)


def test_restart_after_sigkill_ends_every_orphan_and_spares_a_stranger(
    tmp_path: Path, decoy: psutil.Process
) -> None:
    pids_file = tmp_path / "tree.pids"
    config = _config(tmp_path, pids_file)
    tree: list[psutil.Process] = []
    try:
        with dsup_run(config) as first:
            wait_for(pids_file.exists, "the worker to report its tree")
            tree = read_tree(pids_file)
            assert all(alive(p) for p in tree)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=DEADLINE)
        # dsup is gone; its worker, grandchild and daemon live on as orphans.
        assert all(alive(p) for p in tree)
        pids_file.unlink()

        with dsup_run(config) as second:
            wait_for(lambda: not any(alive(p) for p in tree), "the orphans to be ended")
            assert alive(decoy)
            wait_for(pids_file.exists, "the new run of the worker")
            new_tree = read_tree(pids_file)
            second.send_signal(signal.SIGINT)
            assert second.wait(timeout=DEADLINE) == 0
        # A clean shutdown leaves nothing of the new run either.
        assert not any(alive(p) for p in new_tree)
        assert alive(decoy)
    finally:
        kill_all(tree)


def test_second_dsup_on_a_held_state_dir_is_refused(tmp_path: Path) -> None:
    pids_file = tmp_path / "tree.pids"
    config = _config(tmp_path, pids_file)
    with dsup_run(config) as first:
        wait_for(pids_file.exists, "the first dsup to run its worker")
        tree = read_tree(pids_file)
        second = subprocess.run(
            [sys.executable, "-m", "supervisor", "run", str(config)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=DEADLINE,
            check=False,
        )
        assert second.returncode == 1
        assert b"state_dir" in second.stderr
        assert b"Traceback" not in second.stderr
        # The refused dsup touched nothing: the first one's tree still runs.
        assert all(alive(p) for p in tree)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=DEADLINE) == 0
    assert not any(alive(p) for p in tree)


def _escaper(tmp_path: Path, pids_file: Path, *args: str, sweep_seconds: float) -> Path:
    worker = str(WORKERS / "e2e_escaper.py")
    return write_config(
        tmp_path,
        f"""sweep_interval_seconds = {sweep_seconds}

[programs.escaper]
command = [{sys.executable!r}, {worker!r}, {str(pids_file)!r}, {", ".join(map(repr, args))}]
restart = "never"
stop_timeout_seconds = 1.0
""",
    )


def _recorded_adopted(config: Path) -> set[int]:
    with Ledger.open(config.parent / "state" / "ledger.sqlite3") as ledger:
        return {p.pid for p in ledger.adopted_processes()}


@pytest.mark.parametrize("how", ["stop", "sweep", "shutdown", "sigkill"])
def test_a_daemon_escaping_with_setsid_and_env_i_is_ended(
    tmp_path: Path, decoy: psutil.Process, how: str
) -> None:
    """A daemon in its own session without markers survived stop, sweeps and shutdown.

    ``stop``: it holds the run's pipes, so the stop of its run ends it. The others
    point its output at /dev/null: ``sweep`` ends it while its worker still runs,
    ``shutdown`` with the last sweep, and after a SIGKILL of dsup (it ignores
    SIGTERM, so the sweep that found it is still waiting) the next dsup ends it.
    """
    pids_file = tmp_path / "tree.pids"
    args = {
        "stop": (),
        "sweep": ("--quiet",),
        "shutdown": ("--quiet",),
        "sigkill": ("--quiet", "--ignore-term"),
    }[how]
    swept = how in ("sweep", "sigkill")
    config = _escaper(tmp_path, pids_file, *args, sweep_seconds=0.5 if swept else 3600)
    tree: list[psutil.Process] = []
    try:
        with dsup_run(config) as first:
            wait_for(pids_file.exists, "the worker to report its tree")
            tree = read_tree(pids_file)
            worker, daemon = tree
            assert daemon.ppid() == first.pid  # adopted: dsup is the child subreaper
            assert "DSUP_INSTANCE" not in daemon.environ()  # sh sets only PWD
            if how == "stop":
                assert ctl_run(config, "stop", "escaper").returncode == 0
                assert not alive(daemon)
            elif how == "sweep":
                wait_for(lambda: not alive(daemon), "the sweep to end the daemon")
                assert alive(worker)
            elif how == "shutdown":
                assert ctl_run(config, "shutdown").returncode == 0
                assert first.wait(timeout=DEADLINE) == 0
            else:
                wait_for(lambda: daemon.pid in _recorded_adopted(config), "dsup to record it")
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=DEADLINE)
                assert alive(daemon)  # it ignored SIGTERM; dsup died before its SIGKILL
        if how == "sigkill":
            pids_file.unlink()
            with dsup_run(config) as second:
                wait_for(lambda: not any(alive(p) for p in tree), "the next dsup to end it")
                wait_for(pids_file.exists, "the new run of the worker")
                new_tree = read_tree(pids_file)
                second.send_signal(signal.SIGTERM)
                assert second.wait(timeout=DEADLINE) == 0
            assert not any(alive(p) for p in new_tree)
        assert not alive(daemon)
        assert alive(decoy)
    finally:
        kill_all(tree)
