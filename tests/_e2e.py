"""Helpers for end-to-end tests that run the real ``dsup`` as a subprocess."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from collections.abc import Iterator

WORKERS = Path(__file__).parent / "workers"
DEADLINE = 20.0


def alive(proc: psutil.Process) -> bool:
    """True while ``proc`` (identified by pid and create_time) runs and is not a zombie."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def read_tree(pids_file: Path) -> list[psutil.Process]:
    """The processes whose pids a worker wrote to ``pids_file``, one per line."""
    return [psutil.Process(int(line)) for line in pids_file.read_text().split()]


def write_config(tmp_path: Path, programs: str) -> Path:
    """A config with its state_dir in ``tmp_path`` and the given program tables."""
    config = tmp_path / "dsup.toml"
    config.write_text(
        f'[supervisor]\nname = "e2e"\nstate_dir = "state"\n\n{programs}', encoding="utf-8"
    )
    return config


def ctl_run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``dsup ctl -c CONFIG ARGS`` to completion (bounded), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "supervisor", "ctl", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


@contextlib.contextmanager
def dsup_run(config: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``dsup run`` on ``config``; SIGKILL it if still running at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "run", "--quiet", *args, str(config)],
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


def kill_all(procs: list[psutil.Process]) -> None:
    """SIGKILL whatever of ``procs`` still runs (test clean-up)."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.is_running():
                proc.kill()
