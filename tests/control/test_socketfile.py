"""Tests of the control socket's file: an address for a path longer than sun_path."""

from __future__ import annotations

import os
import socket
import stat
from typing import TYPE_CHECKING

from supervisor.control import socketfile
from tests._e2e import DEADLINE, ctl_run, dsup_run, write_config
from tests._wait import wait_for

if TYPE_CHECKING:
    from pathlib import Path


def _deep(tmp_path: Path) -> Path:
    """A directory whose control socket path is longer than 107 bytes."""
    deep = tmp_path.joinpath(*["d" * 40] * 3)
    deep.mkdir(parents=True, mode=0o700)
    assert len(os.fsencode(deep / "state" / "control.sock")) > socketfile.MAX_ADDRESS_BYTES
    return deep


def test_a_socket_path_too_long_for_sun_path_is_bound_and_reached(tmp_path: Path) -> None:
    path = _deep(tmp_path) / "control.sock"
    with socketfile.listen(path) as listener:
        assert stat.S_IMODE(os.stat(path).st_mode) == socketfile.SOCKET_MODE
        assert listener.state() == "ours"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            with socketfile.address(path) as where:
                assert len(os.fsencode(where)) <= socketfile.MAX_ADDRESS_BYTES
                client.connect(where)
            server, _ = listener.sock.accept()
            with server:
                client.sendall(b"ping")
                assert server.recv(4) == b"ping"
        assert socketfile._probe(path) == os.getpid()  # a live server: refused, not replaced
    assert not path.exists()
    assert socketfile._probe(path) is None


def test_a_short_path_is_used_as_it_is(tmp_path: Path) -> None:
    with socketfile.address(tmp_path / "c.sock") as where:
        assert where == str(tmp_path / "c.sock")


def test_dsup_runs_and_answers_ctl_in_a_deep_state_dir(tmp_path: Path) -> None:
    """A long state_dir path killed dsup with a traceback."""
    config = write_config(_deep(tmp_path), '[programs.nap]\ncommand = ["sleep", "1000"]\n')
    with dsup_run(config) as proc:
        running = lambda: "RUNNING" in ctl_run(config, "status").stdout  # noqa: E731
        wait_for(running, "nap RUNNING", seconds=DEADLINE)
        assert ctl_run(config, "shutdown").returncode == 0
        assert proc.wait(timeout=DEADLINE) == 0
        assert proc.stderr is not None
        assert b"Traceback" not in proc.stderr.read()
