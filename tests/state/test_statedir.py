"""Tests of the state directory: layout, instance id, privacy check and lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from supervisor.errors import StateDirLocked, StateDirUnsafe
from supervisor.state.statedir import (
    mark_shutting_down,
    open_state_dir,
    shutdown_marker,
    wait_released,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

WORKERS = Path(__file__).parents[1] / "workers"


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A separate python process holding ``tmp_path/state`` until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-u", str(WORKERS / "reap_hold_statedir.py"), str(tmp_path / "state")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    try:
        assert proc.stdout.readline().split()[0] == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdin.close()
        proc.stdout.close()


def _hold_once(path: Path) -> subprocess.CompletedProcess[str]:
    """Run the holder worker on ``path`` with stdin closed: it takes the lock, then lets go."""
    return subprocess.run(
        [sys.executable, "-u", str(WORKERS / "reap_hold_statedir.py"), str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_open_state_dir_creates_private_layout(tmp_path: Path) -> None:
    path = tmp_path / "a" / "state"
    with open_state_dir(path) as state:
        assert state.path == path
        assert (path.stat().st_mode & 0o777) == 0o700
        assert state.log_dir == path / "logs"
        assert state.log_dir.is_dir()
        assert (state.log_dir.stat().st_mode & 0o777) == 0o700
        assert state.ledger_path == path / "ledger.sqlite3"
        assert state.socket_path == path / "control.sock"
        assert (path / "lock").read_text().strip() == str(os.getpid())
        assert len(state.instance_id) == 32
        int(state.instance_id, 16)


def test_open_state_dir_keeps_instance_id_across_opens(tmp_path: Path) -> None:
    with open_state_dir(tmp_path / "s") as first:
        pass
    with open_state_dir(tmp_path / "s") as second:
        pass
    with open_state_dir(tmp_path / "other") as other:
        pass
    assert first.instance_id == second.instance_id
    assert other.instance_id != first.instance_id


@pytest.mark.parametrize("mode", [0o770, 0o702, 0o777])
def test_open_state_dir_refuses_dir_writable_by_others(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "state"
    path.mkdir()
    path.chmod(mode)
    with pytest.raises(StateDirUnsafe) as info, open_state_dir(path):
        pass
    assert info.value.state_dir == path
    assert str(path) in str(info.value)
    assert "chmod 700" in str(info.value)
    assert not (path / "lock").exists(), "refused before taking the lock"


def test_open_state_dir_never_advises_chmod_on_a_shared_sticky_dir(tmp_path: Path) -> None:
    """``state_dir = "/tmp"`` must not be answered with 'chmod 700 /tmp'."""
    path = tmp_path / "shared"
    path.mkdir()
    path.chmod(0o1777)
    with pytest.raises(StateDirUnsafe) as info, open_state_dir(path):
        pass
    assert "chmod" not in str(info.value)
    assert "of its own" in str(info.value)


def test_open_state_dir_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    """A failed mkdir was a raw traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateDirUnsafe) as info, open_state_dir(blocker / "state"):
        pass
    assert "cannot be used" in str(info.value)
    assert str(blocker / "state") in str(info.value)


def test_open_state_dir_refuses_a_file(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.write_text("")
    with pytest.raises(StateDirUnsafe), open_state_dir(path):
        pass


def test_open_state_dir_refuses_corrupt_instance_id(tmp_path: Path) -> None:
    path = tmp_path / "state"
    with open_state_dir(path):
        pass
    (path / "instance_id").write_text("not-an-id\n")
    with pytest.raises(StateDirUnsafe, match="corrupt instance id"), open_state_dir(path):
        pass


def test_open_state_dir_refused_while_another_process_holds_it(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    path = tmp_path / "state"
    with pytest.raises(StateDirLocked) as info, open_state_dir(path):
        pass
    assert info.value.holder_pid == holder.pid
    assert info.value.state_dir == path
    assert str(holder.pid) in str(info.value)


def test_open_state_dir_free_again_after_holder_is_killed(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    holder.kill()
    holder.wait(timeout=10)
    with open_state_dir(tmp_path / "state") as state:
        assert (state.path / "lock").read_text().strip() == str(os.getpid())


def test_open_state_dir_held_here_refuses_another_process(tmp_path: Path) -> None:
    path = tmp_path / "state"
    with open_state_dir(path):
        out = _hold_once(path)
    assert out.returncode == 3
    assert out.stdout.split() == ["locked", str(os.getpid())]


def test_open_state_dir_releases_lock_on_exit(tmp_path: Path) -> None:
    path = tmp_path / "state"
    with open_state_dir(path):
        pass
    out = _hold_once(path)
    assert out.returncode == 0
    assert out.stdout.split()[0] == "held"


def test_shutdown_marker_names_its_dsup_until_the_next_one_locks(tmp_path: Path) -> None:
    """``dsup ctl`` must tell a dsup shutting down from one whose socket was lost."""
    path = tmp_path / "state"
    with open_state_dir(path):
        assert shutdown_marker(path) is None
        mark_shutting_down(path)
        assert shutdown_marker(path) == os.getpid()
    assert shutdown_marker(path) == os.getpid()  # it outlives its dsup...
    with open_state_dir(path):
        assert shutdown_marker(path) is None  # ...until the next one locks


def test_wait_released_waits_for_the_holder(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    path = tmp_path / "state"
    assert not wait_released(path, 0.1)  # held: gives up after the timeout
    assert holder.stdin is not None
    holder.stdin.close()  # the holder lets go and exits
    assert wait_released(path, 20.0)
    assert wait_released(tmp_path / "never-used", 0.0)  # no lock file: nothing to wait for


def test_state_dir_files_are_never_written_through_a_link(tmp_path: Path) -> None:
    """``shutting-down`` planted as a link to a root-owned file: dsup wrote through it."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path = tmp_path / "state"
    with open_state_dir(path):
        (path / "shutting-down").symlink_to(victim)
        mark_shutting_down(path)  # logged, not raised
        assert shutdown_marker(path) is None
    assert victim.read_text() == "precious\n"
    (path / "instance_id").unlink()
    (path / "instance_id.tmp").symlink_to(victim)
    with open_state_dir(path) as state:
        assert len(state.instance_id) == 32
    assert victim.read_text() == "precious\n"
