"""``dsup run`` as a whole: how signals stop a node (real dsup, real workers)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests._e2e import DEADLINE, WORKERS, alive, dsup_run, kill_all, read_tree, write_config
from tests._wait import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import psutil

pytestmark = pytest.mark.timeout(90)


def _program(name: str, worker: str, pids_file: Path, stop_timeout: float) -> str:
    argv = [sys.executable, str(WORKERS / worker), str(pids_file)]
    return f"""[programs.{name}]
command = {argv!r}
restart = "never"
start_seconds = 0
stop_timeout_seconds = {stop_timeout}
"""


@contextlib.contextmanager
def _node(
    tmp_path: Path, worker: str, stop_timeout: float
) -> Iterator[tuple[subprocess.Popen[bytes], list[psutil.Process], Path]]:
    """Run dsup on one program of ``worker``; yield it, the worker's tree and the config.

    Ready once the worker has written its pids and the control socket exists; the
    tree is SIGKILLed at the end whatever happened.
    """
    pids_file = tmp_path / "tree.pids"
    config = write_config(tmp_path, _program("worker", worker, pids_file, stop_timeout))
    tree: list[psutil.Process] = []
    try:
        with dsup_run(config) as node:
            wait_for(pids_file.exists, "the worker to report its tree")
            tree = read_tree(pids_file)
            wait_for((tmp_path / "state" / "control.sock").exists, "the control socket")
            yield node, tree, config
    finally:
        kill_all(tree)


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT])
def test_runner_stops_the_fleet_gracefully_on(tmp_path: Path, signum: signal.Signals) -> None:
    """A closed terminal (SIGHUP) must not kill dsup and orphan its workers (QA #1)."""
    with _node(tmp_path, "e2e_spawner.py", 5.0) as (node, tree, _):
        node.send_signal(signum)
        assert node.wait(timeout=DEADLINE) == 0
        assert not any(alive(p) for p in tree)


def test_runner_second_sigint_kills_at_once_and_exits_1(tmp_path: Path) -> None:
    """The worker ignores SIGTERM and has a minute to stop; a second Ctrl-C kills it now."""
    socket = tmp_path / "state" / "control.sock"
    with _node(tmp_path, "e2e_stubborn.py", 60.0) as (node, tree, _):
        node.send_signal(signal.SIGINT)
        # The first thing a shutdown does is to stop accepting commands.
        wait_for(lambda: not socket.exists(), "the graceful shutdown to begin")
        assert alive(tree[0])
        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=DEADLINE) == 1
        assert not alive(tree[0])


def test_ctl_names_the_live_dsup_whose_socket_is_gone(tmp_path: Path) -> None:
    """A missing socket is not 'no dsup running' when the state_dir's holder lives (QA #4)."""
    socket = tmp_path / "state" / "control.sock"
    with _node(tmp_path, "e2e_stubborn.py", 5.0) as (node, _, config):
        # Someone else's file in its place: dsup leaves it alone and cannot answer.
        socket.unlink()
        socket.write_text("not a socket")
        ctl = subprocess.run(
            [sys.executable, "-m", "supervisor", "ctl", "-c", str(config), "status"],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        assert ctl.returncode == 3
        assert f"pid {node.pid}" in ctl.stderr
        assert "Traceback" not in ctl.stderr
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=DEADLINE) == 0
