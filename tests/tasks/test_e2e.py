"""Tasks through the real ``dsup run`` and ``dsup ctl``, and after dsup is SIGKILLed."""

from __future__ import annotations

import json
import signal
from typing import TYPE_CHECKING

import pytest

from tests._e2e import DEADLINE, alive, ctl_run, dsup_run, kill_all, write_config
from tests._wait import wait_for
from tests.tasks._tasks import held, task_program

if TYPE_CHECKING:
    from pathlib import Path

    import psutil

pytestmark = pytest.mark.timeout(120)


def _tasks(config: Path) -> dict[int, dict[str, object]]:
    done = ctl_run(config, "--json", "tasks", "-n", "100")
    assert done.returncode == 0, done.stderr
    return {int(t["id"]): t for t in json.loads(done.stdout)["tasks"]}


def _submit(config: Path, program: str, text: str) -> int:
    done = ctl_run(config, "task", program, text)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_ctl_task_wait_prints_the_result_and_exits_by_its_outcome(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, task_program("echo", "echo", "{task}") + task_program("bad", "fail")
    )
    with dsup_run(config):
        wait_for(lambda: ctl_run(config, "tasks").returncode == 0, "dsup to answer")
        ok = ctl_run(config, "task", "echo", "it's $HOME; `x`", "--wait")
        bad = ctl_run(config, "task", "bad", "x", "--wait")
        unknown = ctl_run(config, "task", "nope", "x")
        late = ctl_run(config, "task-cancel", "1")
        listed = ctl_run(config, "tasks")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["argv"] == ["it's $HOME; `x`"]
    assert bad.returncode == 1
    assert "failed: exit code 3" in bad.stderr
    assert "problem 4" in bad.stderr
    assert unknown.returncode == 1
    assert "takes no tasks" in unknown.stderr
    assert late.returncode == 1
    assert "task 1 is already done" in late.stderr
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[1].split()[:3] == ["2", "bad", "failed"]


def test_tasks_running_when_dsup_is_sigkilled_run_again_on_its_next_start(
    tmp_path: Path,
) -> None:
    """At-least-once: the attempts cut short are counted; max attempts reached = failed."""
    hold, once = tmp_path / "hold", tmp_path / "once"
    hold.mkdir()
    once.mkdir()
    config = write_config(
        tmp_path,
        task_program("held", "hold", str(hold), concurrency=2)
        + task_program("once", "hold", str(once), task_max_attempts=1),
    )
    first_life: list[psutil.Process] = []
    try:
        with dsup_run(config) as node:
            wait_for(lambda: ctl_run(config, "tasks").returncode == 0, "dsup to answer")
            ids = [_submit(config, "held", f"job {i}") for i in range(3)]
            lone = _submit(config, "once", "lone job")
            wait_for(lambda: len(held(hold)) == 2 and len(held(once)) == 1, "3 tasks running")
            first_life = [p for tree in [*held(hold).values(), *held(once).values()] for p in tree]
            node.send_signal(signal.SIGKILL)
            node.wait(timeout=DEADLINE)
        for path in [*hold.glob("*.pids"), *once.glob("*.pids")]:
            path.unlink()
        with dsup_run(config):
            wait_for(lambda: len(held(hold)) == 2, "the 2 cut-short tasks to run again")
            assert not any(alive(p) for p in first_life)  # the startup sweep ended them
            (hold / "go").touch()
            wait_for(
                lambda: all(t["state"] in ("done", "failed") for t in _tasks(config).values()),
                "every task to end",
            )
            tasks = _tasks(config)
    finally:
        kill_all(first_life)
    assert [(tasks[i]["state"], tasks[i]["attempts"]) for i in ids] == [
        ("done", 2),
        ("done", 2),
        ("done", 1),
    ]
    assert [tasks[i]["result"] for i in ids] == [f"held {i}\n" for i in ids]
    assert tasks[lone]["state"] == "failed"
    assert tasks[lone]["reason"] == (
        "its node stopped during each of its 1 attempts (task_max_attempts = 1)"
    )
    assert not held(once)  # never ran again
