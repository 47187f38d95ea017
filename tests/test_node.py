"""``dsup run`` as a whole: how signals stop a node (real dsup, real workers)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

from supervisor.node import WORKER_THREADS
from tests._console import PtyRun
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
    """A closed terminal (SIGHUP) must not kill dsup and orphan its workers."""
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
    """A missing socket is not 'no dsup running' when the state_dir's holder lives."""
    socket = tmp_path / "state" / "control.sock"
    with _node(tmp_path, "e2e_stubborn.py", 0.5) as (node, _, config):
        # Someone else's file in its place: dsup leaves it alone and cannot answer.
        # Swapped in one rename: an unlink first leaves dsup's 2 s socket
        # watcher a moment to find the path empty and re-create its socket.
        stranger = socket.with_name("stranger")
        stranger.write_text("not a socket")
        os.replace(stranger, socket)
        ctl = ctl_run(config, "status")
        assert ctl.returncode == 3
        assert f"pid {node.pid}" in ctl.stderr
        assert "is not a socket: dsup leaves someone else's file alone" in ctl.stderr
        assert "Traceback" not in ctl.stderr
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=DEADLINE) == 0


def _sig_mask(pid: int, field: str) -> int:
    """A signal mask of ``/proc/PID/status`` (``SigIgn``, ``SigCgt``) as an int."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value, 16)
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_runner_ctrl_z_leaves_the_fleet_running_with_a_note(tmp_path: Path) -> None:
    """Ctrl-Z typed on dsup's terminal must not stop dsup (and stall its workers).

    dsup catches SIGTSTP rather than ignoring it, so the workers it starts
    still have the default disposition (an ignored signal would be inherited).
    """
    config = write_config(tmp_path, _program("worker", "e2e_spawner.py", tmp_path / "p", 5.0))
    tree: list[psutil.Process] = []
    try:
        with PtyRun.dsup(config, rows=24, columns=100) as run:
            wait_for((tmp_path / "p").exists, "the worker to report its tree")
            tree = read_tree(tmp_path / "p")
            run.read_until(lambda text: "STARTING -> RUNNING" in text, "the worker to run")
            run.type(b"\x1a")
            note = "dsup ignores Ctrl-Z (SIGTSTP); Ctrl-C stops the fleet"
            run.read_until(lambda text: note in text or "stopped]" in text, "the Ctrl-Z note")
            assert "stopped]" not in run.plain, run.plain  # what the shell says of a stopped job
            assert psutil.Process(run.job_pid).status() != psutil.STATUS_STOPPED
            status = ctl_run(config, "status")
            assert status.returncode == 0, status.stderr  # it still answers
            tstp = 1 << (signal.SIGTSTP - 1)
            assert not _sig_mask(run.job_pid, "SigIgn") & tstp
            assert _sig_mask(run.job_pid, "SigCgt") & tstp  # caught, not ignored
            for worker in tree:
                assert (
                    not (_sig_mask(worker.pid, "SigIgn") | _sig_mask(worker.pid, "SigCgt")) & tstp
                )
            run.type(b"\x03")
            assert run.wait_exit() == 0
        assert not any(alive(p) for p in tree)
    finally:
        kill_all(tree)


def test_runner_prints_the_warnings_of_dsup_check_once_at_start_up(tmp_path: Path) -> None:
    """A missing executable showed only as a BACKOFF reason; dsup check knew it."""
    config = write_config(
        tmp_path,
        '[programs.lost]\ncommand = ["dsup-test-no-such-program"]\ncwd = "no_such_dir"\n'
        "autostart = false\n",
    )
    with dsup_run(config) as node:
        wait_for((tmp_path / "state" / "control.sock").exists, "the control socket")
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=DEADLINE) == 0
        assert node.stderr is not None
        stderr = node.stderr.read().decode()
    for key in ("programs.lost.cwd: ", "programs.lost.command: "):
        assert stderr.count(key) == 1, stderr
    assert f"{config}: programs.lost.command: 'dsup-test-no-such-program'" in stderr


def test_runner_without_a_terminal_imports_only_what_it_uses(tmp_path: Path) -> None:
    """A node kept rich, psutil, difflib (and would keep discord) loaded for nothing: memory."""
    config = write_config(tmp_path, '[programs.s]\ncommand = ["sleep", "60"]\n')
    node = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "supervisor", "run", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for((tmp_path / "state" / "control.sock").exists, "the control socket")
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=DEADLINE) == 0
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(timeout=DEADLINE)
        assert node.stderr is not None
        imported = node.stderr.read().decode()
        node.stderr.close()
    names = {line.rsplit("|", 1)[1].strip() for line in imported.splitlines() if "|" in line}
    assert "supervisor.node" in names  # the import log is there
    assert not {n for n in names if n.split(".")[0] in ("rich", "discord")}
    assert "supervisor.console.live" not in names  # the live view: for a terminal only
    # Imported only where they are used (a config mistake, a oneshot task, a user with no
    # passwd entry, a process tree to signal), and not through ctypes.util (tempfile).
    assert not names & {"difflib", "tempfile", "getpass", "ctypes.util", "psutil"}
    # uuid brings platform; the workers' side of worker_sdk and what reads a worker's
    # channel wait for a worker that writes (about 0.5 MiB).
    assert not names & {"uuid", "platform"}
    assert not names & {"worker_sdk.api", "worker_sdk.tasks", "supervisor.process.worker_link"}
    # dsup ctl's arguments (not even built), client and rendering: a node only serves the socket.
    assert not names & {"supervisor.control.ctl_args", "supervisor.control.ctl"}
    assert "supervisor.control.client" not in names
    assert not names & {"supervisor.control.render", "supervisor.commands.health"}
    # Reading and following log files: loaded with the first tail (ctl tail, Discord).
    assert not names & {"supervisor.commands.tail", "supervisor.output.logread"}
    # A oneshot task's attempt: loaded when the first one runs; the task queue, when first
    # needed (a program takes tasks, [discord], tasks in the ledger, a task command).
    assert "supervisor.tasks.oneshot" not in names
    assert not names & {"supervisor.tasks.queue", "supervisor.tasks.stream"}
    assert "supervisor.tasks.files" not in names


def test_runner_starting_many_processes_uses_a_few_threads(tmp_path: Path) -> None:
    """Each start read /proc and wrote the ledger in a thread: a burst of starts made
    anyio's 40, whose stacks and malloc arenas stayed resident (about 1 MiB)."""
    config = write_config(
        tmp_path, '[programs.s]\ncommand = ["sleep", "60"]\nnumprocs = 24\nstart_seconds = 0\n'
    )
    with dsup_run(config) as node:
        wait_for(lambda: ctl_run(config, "status").stdout.count("RUNNING") == 24, "all RUNNING")
        threads = psutil.Process(node.pid).num_threads()
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=DEADLINE) == 0
    assert threads <= 2 + WORKER_THREADS  # with the main thread and the console's writer
