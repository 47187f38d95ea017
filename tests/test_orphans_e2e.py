"""End to end: a dsup killed with SIGKILL leaves orphans; the next dsup ends them.

Runs the real ``dsup run`` as a subprocess on a temporary config and state_dir.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

WORKERS = Path(__file__).parent / "workers"
DEADLINE = 20.0

pytestmark = pytest.mark.timeout(90)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _alive(proc: psutil.Process) -> bool:
    """True while ``proc`` (identified by pid and create_time) runs and is not a zombie."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _config(tmp_path: Path, pids_file: Path) -> Path:
    config = tmp_path / "dsup.toml"
    config.write_text(
        f"""
[supervisor]
name = "e2e"
state_dir = "state"

[programs.spawner]
command = [{sys.executable!r}, {str(WORKERS / "e2e_spawner.py")!r}, {str(pids_file)!r}]
restart = "never"
stop_timeout_seconds = 2.0
""",
        encoding="utf-8",
    )
    return config


@contextlib.contextmanager
def _dsup(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "run", "--quiet", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=DEADLINE)
        assert proc.stderr is not None
        proc.stderr.close()


def _read_tree(pids_file: Path) -> list[psutil.Process]:
    return [psutil.Process(int(line)) for line in pids_file.read_text().split()]


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
        with _dsup(config) as first:
            _wait_for(pids_file.exists, "the worker to report its tree")
            tree = _read_tree(pids_file)
            assert all(_alive(p) for p in tree)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=DEADLINE)
        # dsup is gone; its worker, grandchild and daemon live on as orphans.
        assert all(_alive(p) for p in tree)
        pids_file.unlink()

        with _dsup(config) as second:
            _wait_for(lambda: not any(_alive(p) for p in tree), "the orphans to be ended")
            assert _alive(decoy)
            _wait_for(pids_file.exists, "the new run of the worker")
            new_tree = _read_tree(pids_file)
            second.send_signal(signal.SIGINT)
            assert second.wait(timeout=DEADLINE) == 0
        # A clean shutdown leaves nothing of the new run either.
        assert not any(_alive(p) for p in new_tree)
        assert _alive(decoy)
    finally:
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                if proc.is_running():
                    proc.kill()


def test_second_dsup_on_a_held_state_dir_is_refused(tmp_path: Path) -> None:
    pids_file = tmp_path / "tree.pids"
    config = _config(tmp_path, pids_file)
    with _dsup(config) as first:
        _wait_for(pids_file.exists, "the first dsup to run its worker")
        tree = _read_tree(pids_file)
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
        assert all(_alive(p) for p in tree)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=DEADLINE) == 0
    assert not any(_alive(p) for p in tree)
