"""Tests of ``dsup ctl`` as a real subprocess against a real node: output and exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from supervisor import cli, humanize
from supervisor.control.render import render_logs, render_status
from supervisor.errors import StateDirLocked
from supervisor.state.statedir import open_state_dir
from tests._control import ask, program, result, running_node, states, write_config
from tests._wait import eventually, wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import Process

TICK = program("tick", "ctl_ticker.py", "0.05", numprocs=2)
CRASH = program("crash", "ctl_crash.py", autostart=False)


async def ctl(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``dsup ctl ARGS`` to completion (bounded)."""
    with anyio.fail_after(30):
        done = await anyio.run_process(
            [sys.executable, "-m", "supervisor", "ctl", *args], check=False
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


@contextlib.asynccontextmanager
async def dsup_run(cfg: Path, workers: list[int]) -> AsyncIterator[Process]:
    """``dsup run CFG`` as a real process, its output in a file beside the config.

    On the way out, the pids the test put in ``workers`` are killed (they may
    ignore SIGTERM), then dsup is stopped if it still runs.
    """
    argv = [sys.executable, "-m", "supervisor", "run", str(cfg)]
    out = os.open(cfg.parent / "run.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        proc = await anyio.open_process(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    finally:
        os.close(out)
    async with proc:
        try:
            yield proc
        finally:
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if proc.returncode is None:
                proc.terminate()
            with anyio.fail_after(20):
                await proc.wait()


@contextlib.asynccontextmanager
async def ctl_process(cfg: Path, *args: str) -> AsyncIterator[Process]:
    """``dsup ctl -c CFG ARGS`` running for the block; killed if it outlives it."""
    argv = [sys.executable, "-m", "supervisor", "ctl", "-c", str(cfg), *args]
    async with await anyio.open_process(argv) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.kill()


async def running_pid(cfg: Path, process: str) -> int:
    """Wait until ``dsup ctl status`` shows ``process`` RUNNING; its pid."""
    pid = 0

    async def up() -> bool:
        nonlocal pid
        done = await ctl("-c", str(cfg), "--json", "status", process)
        if done.returncode != 0:
            return False
        st = json.loads(done.stdout)["processes"][0]["status"]
        pid = st["pid"] or 0
        return bool(st["state"] == "RUNNING")

    await eventually(up, seconds=20)
    return pid


async def test_ctl_status_prints_an_aligned_table_and_exits_0(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, TICK, CRASH)
    async with running_node(cfg) as node:
        await wait_until(lambda: states(node)["tick:1"] == "RUNNING")
        done = await ctl("-c", str(cfg), "status")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = lines[0].split()
    assert header == [
        "NAME",
        "STATE",
        "PID",
        "UPTIME",
        "RESTARTS",
        "LAST",
        "EXIT",
        "MEMORY",
        "CPU",
        "INFO",
    ]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"tick:0", "tick:1", "crash:0"}
    assert rows["tick:0"].split()[1] == "RUNNING"
    assert "MiB" in rows["tick:0"]
    assert rows["crash:0"].split()[1] == "STOPPED"
    # aligned: every column starts at the same offset on every line
    for column in ("STATE", "PID", "MEMORY"):
        at = lines[0].index(column)
        assert all(line[at - 2 : at] == "  " for line in lines), column


async def test_ctl_json_output_is_the_result(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, TICK)
    async with running_node(cfg) as node:
        before = await ctl("--socket", str(node.socket), "--json", "status", "tick:0")
        after = await ctl("status", "tick:0", "--json", "-c", str(cfg), "--timeout", "20")
        tail = await ctl("-c", str(cfg), "tail", "tick:0", "--json", "-n", "1")
    for done in (before, after, tail):
        assert done.returncode == 0, done.stderr
    for done in (before, after):
        report = json.loads(done.stdout)
        assert [p["status"]["process"] for p in report["processes"]] == ["tick:0"]
    assert "logs" in json.loads(tail.stdout)


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "-c", "x.toml", "--timeout", "5", "status"],
        ["status", "--json", "-c", "x.toml", "--timeout", "5"],
        ["--json", "status", "-c", "x.toml", "--timeout", "5"],
    ],
)
def test_ctl_global_options_go_before_or_after_the_verb(argv: list[str]) -> None:
    args = cli.build_parser().parse_args(["ctl", *argv])
    assert (args.json, args.config, args.timeout, args.socket) == (True, Path("x.toml"), 5, None)


async def test_ctl_config_and_socket_on_both_sides_of_the_verb_is_a_usage_error(
    tmp_path: Path,
) -> None:
    done = await ctl("-c", str(tmp_path / "a.toml"), "status", "--socket", str(tmp_path / "s"))
    assert done.returncode == 2
    assert "--socket" in done.stderr


async def test_ctl_exit_1_when_the_command_fails(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, TICK, CRASH)
    async with running_node(cfg):
        crash = await ctl("-c", str(cfg), "start", "crash")
        status = await ctl("-c", str(cfg), "status")
        unknown = await ctl("-c", str(cfg), "stop", "nosuch")
        ok = await ctl("-c", str(cfg), "restart", "tick:0")
    assert crash.returncode == 1
    assert crash.stdout.startswith("crash:0: failed")
    info_at = status.stdout.index("INFO")
    row = next(line for line in status.stdout.splitlines() if line.startswith("crash:0"))
    assert row[info_at:].strip(), row  # INFO says why it is not RUNNING
    assert unknown.returncode == 1
    assert "no program or process matches 'nosuch'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("tick:0: ok, RUNNING (pid ")


async def test_ctl_start_of_a_one_shot_job_that_finished_is_ok(tmp_path: Path) -> None:
    """A job that ran once and exited 0 was reported failed (exit 1)."""
    once = program("once", "ctl_oneshot.py", autostart=False, restart="never")
    again = program("again", "ctl_oneshot.py", autostart=False, restart="on-failure")
    bad = program("bad", "ctl_oneshot.py", "3", autostart=False, restart="never")
    cfg = write_config(tmp_path, once, again, bad)
    async with running_node(cfg):
        start = await ctl("-c", str(cfg), "start", "once")
        restart = await ctl("-c", str(cfg), "restart", "again")
        failed = await ctl("-c", str(cfg), "start", "bad")
    assert start.returncode == 0, start.stdout
    assert start.stdout.strip() == "once:0: ok, EXITED: finished (exit code 0)"
    assert restart.returncode == 0, restart.stdout
    assert restart.stdout.strip() == "again:0: ok, EXITED: finished (exit code 0)"
    assert failed.returncode == 1
    assert failed.stdout.startswith("bad:0: failed, ")


async def test_ctl_signal_all_skips_what_is_not_running(tmp_path: Path) -> None:
    """One stopped process made `signal all` fail (exit 1)."""
    cfg = write_config(tmp_path, TICK, CRASH)
    async with running_node(cfg) as node:
        await wait_until(lambda: states(node)["tick:1"] == "RUNNING")
        every = await ctl("-c", str(cfg), "signal", "all", "USR1")
        glob = await ctl("-c", str(cfg), "signal", "cr*", "USR1")
        one = await ctl("-c", str(cfg), "signal", "crash:0", "USR1")
    assert every.returncode == 0, every.stdout
    lines = sorted(every.stdout.splitlines())
    assert lines[0] == "crash:0: skipped, STOPPED: not running"
    assert [line.split(",")[0] for line in lines[1:]] == ["tick:0: ok", "tick:1: ok"]
    for nothing in (glob, one):  # nothing matched was running: that is a failure
        assert nothing.returncode == 1
        assert nothing.stdout.startswith("crash:0: failed, STOPPED: "), nothing.stdout
        assert "cannot send SIGUSR1" in nothing.stdout


async def test_ctl_status_counts_down_to_the_next_start(tmp_path: Path) -> None:
    """BACKOFF's "next try in 17.77 s" never moved; --json had no time."""
    slow = program(
        "slow", "ctl_crash.py", autostart=False, backoff_seconds=20, backoff_max_seconds=20
    )
    cfg = write_config(tmp_path, slow, TICK)
    async with running_node(cfg) as node:
        await ctl("-c", str(cfg), "start", "slow")
        assert states(node)["slow:0"] == "BACKOFF"
        as_json = await ctl("-c", str(cfg), "--json", "status")
        human = await ctl("-c", str(cfg), "status", "slow")
        await ctl("-c", str(cfg), "stop", "slow")
        stopped = await ctl("-c", str(cfg), "--json", "status", "slow")
    rows = {r["status"]["process"]: r for r in json.loads(as_json.stdout)["processes"]}
    report = json.loads(as_json.stdout)
    left = rows["slow:0"]["status"]["next_start_at"] - report["at"]
    assert 20 * 0.8 - 5 < left <= 20  # jitter takes up to 20 %; the ctl runs took time
    assert rows["tick:0"]["status"]["next_start_at"] is None
    assert json.loads(stopped.stdout)["processes"][0]["status"]["next_start_at"] is None
    info = human.stdout.splitlines()[1].split("  ")[-1]
    assert info.startswith("exited too quickly; failed start 1 of "), info
    count = int(info.rsplit("next try in ", 1)[1].removesuffix("s"))
    assert 0 < count <= 20


def test_render_status_computes_the_countdown_when_shown() -> None:
    status = {
        "process": "slow:0",
        "state": "BACKOFF",
        "reason": "exited too quickly (exit code 3); next try in 17.77 s",
        "next_start_at": 1017.77,
    }
    report = {"at": 1000.0, "processes": [{"status": status}]}

    def info(now: float) -> str:
        return render_status(report, now=now).splitlines()[1].split("  ")[-1]

    assert info(1000.0) == "exited too quickly (exit code 3); next try in 18s"
    assert info(1010.0) == "exited too quickly (exit code 3); next try in 8s"
    assert info(1020.0) == "exited too quickly (exit code 3); next try now"
    status["reason"] = "exit code 0; restarting in 100.00 s (2 short runs in a row)"
    status["next_start_at"] = 1100.0
    assert info(1000.0) == "exit code 0; restarting in 1m40s (2 short runs in a row)"
    status["reason"] = "worded otherwise"
    assert info(1000.0) == "worded otherwise; next start in 1m40s"


async def test_ctl_exit_2_on_usage_errors(tmp_path: Path) -> None:
    missing = await ctl("-c", str(tmp_path / "nope.toml"), "status")
    assert missing.returncode == 2
    assert "no such file" in missing.stderr
    bad = await ctl("--socket", str(tmp_path / "s"), "frobnicate")
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "0", "1e300", "soon"])
async def test_ctl_refuses_a_bad_timeout(tmp_path: Path, value: str) -> None:
    """These gave tracebacks or odd errors."""
    done = await ctl("--timeout", value, "--socket", str(tmp_path / "s"), "status")
    assert done.returncode == 2
    assert "--timeout must be a number > 0" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["tail", "x", "-n", "-5"], "must be a whole number >= 0"),
        (["start", ""], "must not be empty"),
        (["status", "a", "b"], "usage: dsup ctl status"),
    ],
)
async def test_ctl_usage_errors_exit_2_with_the_subcommand_usage(
    tmp_path: Path, argv: list[str], says: str
) -> None:
    """Each names its subcommand's usage, not the top-level one."""
    done = await ctl("--socket", str(tmp_path / "s"), *argv)
    assert done.returncode == 2
    assert says in done.stderr


async def test_ctl_bad_signal_is_a_usage_error_and_json_errors_are_json(tmp_path: Path) -> None:
    """The server's InvalidArgument is exit 2; --json prints the error object."""
    cfg = write_config(tmp_path, TICK)
    async with running_node(cfg):
        bad = await ctl("-c", str(cfg), "signal", "tick", "FOO")
        as_json = await ctl("-c", str(cfg), "--json", "stop", "nosuch")
    absent = await ctl("--json", "--socket", str(tmp_path / "none.sock"), "status")
    assert bad.returncode == 2
    assert "bad signal 'FOO'" in bad.stderr
    assert as_json.returncode == 1
    error = json.loads(as_json.stdout)
    assert error["ok"] is False
    assert error["error"]["type"] == "UnknownProcess"
    assert "nosuch" in error["error"]["message"]
    assert "nosuch" in as_json.stderr
    assert absent.returncode == 3
    assert json.loads(absent.stdout)["error"]["type"] == "NotRunning"


async def test_ctl_finds_the_socket_of_a_config_being_edited(tmp_path: Path) -> None:
    """A config that no longer validates still names its state_dir."""
    cfg = write_config(tmp_path, TICK)
    async with running_node(cfg) as node:
        await wait_until(lambda: states(node)["tick:0"] == "RUNNING")
        text = cfg.read_text()
        cfg.write_text(text + '\n[programs.half]\ncommand = ""\nnumprocs = -1\n')
        edited = await ctl("-c", str(cfg), "status", "tick:0")
        cfg.write_text(text + "\n[programs.half\n")  # not even TOML
        half_edit = await ctl("-c", str(cfg), "status")
        cfg.write_text(text.replace("state_dir = ", "state_dir = [", 1))  # [supervisor] broken
        broken = await ctl("-c", str(cfg), "status")
    assert edited.returncode == 0, edited.stderr
    assert "tick:0" in edited.stdout
    assert "does not validate" in edited.stderr
    # A syntax slip elsewhere in the file still leaves [supervisor] readable.
    assert half_edit.returncode == 0, half_edit.stderr
    assert "tick:0" in half_edit.stdout
    assert broken.returncode == 2
    assert "not valid TOML" in broken.stderr
    assert str(cfg) in broken.stderr  # the full path, as the server names it


async def test_ctl_note_on_a_config_that_does_not_validate_counts_in_words(
    tmp_path: Path,
) -> None:
    """The note said "(1 issues; ...)"."""
    cfg = write_config(tmp_path, TICK)
    cfg.write_text(cfg.read_text() + '\n[programs.half]\ncommand = ""\n')
    done = await ctl("-c", str(cfg), "status")
    assert done.returncode == 3  # no dsup there; the note comes first
    assert "does not validate (1 issue; `dsup check` lists it)" in done.stderr


async def test_ctl_exit_3_when_no_dsup_runs_there(tmp_path: Path) -> None:
    absent = await ctl("--socket", str(tmp_path / "control.sock"), "status")
    assert absent.returncode == 3
    assert "no dsup running there" in absent.stderr
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(stale))
    refused = await ctl("--socket", str(stale), "status")
    assert refused.returncode == 3
    cfg = write_config(tmp_path, TICK)  # a config whose dsup is not running
    assert (await ctl("-c", str(cfg), "status")).returncode == 3


async def test_ctl_tail_prints_the_last_lines(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, TICK)
    async with running_node(cfg) as node:
        await wait_until(lambda: states(node)["tick:0"] == "RUNNING")
        done = await ctl("-c", str(cfg), "tail", "tick:0", "-n", "3")

        async def three() -> bool:
            nonlocal done
            done = await ctl("-c", str(cfg), "tail", "tick:0", "-n", "3")
            return len(done.stdout.splitlines()) == 3

        await eventually(three)
        both = await ctl("-c", str(cfg), "tail", "tick", "-n", "1")
    assert done.returncode == 0
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["tick"] * 3
    assert sorted(line.split(" | ")[0] for line in both.stdout.splitlines()) == ["tick:0", "tick:1"]


async def test_ctl_tail_says_when_it_gives_fewer_lines_than_asked(tmp_path: Path) -> None:
    """`tail -n 5000` quietly printed 1000 lines; then it said so for 24."""

    def lines(name: str, count: int) -> str:
        return program(name, "", command=["sh", "-c", f"seq 1 {count}; exec sleep 1000"])

    cfg = write_config(tmp_path, lines("over", 1001), lines("full", 1000), TICK)
    async with running_node(cfg) as node:

        async def written() -> bool:
            tails = result(await ask(node.socket, "tail", target="*", lines=1))["logs"]
            assert isinstance(tails, list)
            return [t["lines"] for t in tails[:2]] == [["1001"], ["1000"]]

        await eventually(written)
        over = await ctl("-c", str(cfg), "tail", "over", "-n", "5000")
        full = await ctl("-c", str(cfg), "tail", "full", "-n", "5000")
        few = await ctl("-c", str(cfg), "tail", "tick:0", "-n", "5000")
        both = await ctl("-c", str(cfg), "--json", "tail", "*", "-n", "1001")
    assert over.returncode == 0
    assert "note: tail gives at most 1000 lines per process" in over.stderr
    assert over.stdout.splitlines() == [str(i) for i in range(2, 1002)]
    assert full.stderr == ""
    assert full.stdout.splitlines() == [str(i) for i in range(1, 1001)]
    assert few.stderr == ""
    logs = json.loads(both.stdout)["logs"]
    assert [(log["process"], log["capped"]) for log in logs[:2]] == [
        ("over:0", True),
        ("full:0", False),
    ]
    assert "note: tail gives at most 1000" in both.stderr


async def test_ctl_tail_follow_ends_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, TICK)
    async with running_node(cfg) as node:
        await wait_until(lambda: states(node)["tick:0"] == "RUNNING")
        argv = [
            sys.executable,
            "-m",
            "supervisor",
            "ctl",
            "-c",
            str(cfg),
            "tail",
            "-f",
            "-n",
            "0",
            "tick:0",
        ]
        async with await anyio.open_process(argv) as proc:
            assert proc.stdout is not None
            assert proc.stderr is not None
            seen = b""
            with anyio.fail_after(15):
                while seen.count(b"\n") < 3:
                    seen += await proc.stdout.receive()
                assert node.server.clients == 1
                proc.send_signal(signal.SIGINT)
                code = await proc.wait()
            err = b"".join([chunk async for chunk in proc.stderr])
        await wait_until(lambda: node.server.clients == 0)
    assert code == 0
    assert b"Traceback" not in err
    assert all(line.startswith(b"tick ") for line in seen.splitlines()[:3]), seen


async def test_ctl_tail_follow_ends_when_reload_removes_what_it_follows(tmp_path: Path) -> None:
    """`tail -f env` went on following, silently and forever, after reload removed it."""
    cfg = write_config(tmp_path, TICK, CRASH)
    async with running_node(cfg) as node:
        await wait_until(lambda: states(node)["tick:0"] == "RUNNING")
        async with ctl_process(cfg, "tail", "-f", "tick") as proc:
            assert proc.stdout is not None
            assert proc.stderr is not None
            with anyio.fail_after(15):
                assert await proc.stdout.receive()  # following
                write_config(tmp_path, CRASH)
                assert result(await ask(node.socket, "reload"))["removed"] == ["tick"]
                code = await proc.wait()
            err = b"".join([chunk async for chunk in proc.stderr]).decode()
    assert code == 1
    assert "tail -f ended: no program or process matches 'tick'; known: crash" in err, err


async def test_ctl_tail_follow_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, TICK)
    async with running_node(cfg) as node:
        await wait_until(lambda: states(node)["tick:0"] == "RUNNING")
        argv = [sys.executable, "-m", "supervisor", "ctl", "-c", str(cfg), "tail", "-f", "tick:0"]
        read_end, write_end = os.pipe()
        try:
            async with await anyio.open_process(argv, stdout=write_end) as proc:
                os.close(write_end)
                write_end = -1
                assert proc.stderr is not None
                with anyio.fail_after(15):
                    await anyio.wait_readable(read_end)
                    assert os.read(read_end, 100)
                    os.close(read_end)  # like `| head -n 1` once it has its line
                    read_end = -1
                    code = await proc.wait()
                err = b"".join([chunk async for chunk in proc.stderr])
        finally:
            for fd in (read_end, write_end):
                if fd >= 0:
                    os.close(fd)
        await wait_until(lambda: node.server.clients == 0)
    assert code == 0
    assert err == b""


async def test_ctl_tail_makes_escape_sequences_harmless(tmp_path: Path) -> None:
    """A worker's escapes and control characters reached the terminal raw."""
    cfg = write_config(tmp_path, program("garbage", "ctl_garbage.py"))
    async with running_node(cfg):
        done = await ctl("-c", str(cfg), "tail", "garbage")

        async def two() -> bool:
            nonlocal done
            done = await ctl("-c", str(cfg), "tail", "garbage")
            return len(done.stdout.splitlines()) == 2

        await eventually(two)
        raw = await ctl("-c", str(cfg), "--json", "tail", "garbage")
    assert done.stdout.splitlines() == ["RED bell\\x07 back\\x08 end", "plain line"]
    assert "\x1b" not in done.stdout
    lines = json.loads(raw.stdout)["logs"][0]["lines"]
    assert lines[0].startswith("\x1b[31mRED")  # --json stays raw


async def test_ctl_during_a_shutdown_says_so_and_a_follow_ends_cleanly(tmp_path: Path) -> None:
    """ctl claimed a deleted socket would come back; tail -f exited 3."""
    stubborn = program("stubborn", "ctl_ticker.py", "--ignore-term", stop_timeout_seconds=60.0)
    cfg = write_config(tmp_path, stubborn)
    workers: list[int] = []
    async with dsup_run(cfg, workers) as node:
        workers.append(await running_pid(cfg, "stubborn:0"))
        async with ctl_process(cfg, "tail", "-f", "stubborn") as follower:
            assert follower.stdout is not None
            assert follower.stderr is not None
            with anyio.fail_after(20):
                assert await follower.stdout.receive()  # following
                down = await ctl("-c", str(cfg), "shutdown", "--no-wait")
                followed = await follower.wait()
            err = b"".join([chunk async for chunk in follower.stderr]).decode()
        status = await ctl("-c", str(cfg), "status")
        with pytest.raises(StateDirLocked), open_state_dir(tmp_path / "state"):
            pass  # --no-wait returned while dsup is still there
        os.kill(workers[0], signal.SIGKILL)  # what held the shutdown up
        with anyio.fail_after(20):
            code = await node.wait()
    after = await ctl("-c", str(cfg), "status")
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == "node ctltest: stopping every process and exiting"
    assert followed == 0, err
    assert err.strip() == f"dsup ctl: tail -f ended: dsup (pid {node.pid}) is shutting down"
    assert status.returncode == 3
    assert f"dsup (pid {node.pid}) is shutting down" in status.stderr
    assert "re-created" not in status.stderr
    assert code == 0
    assert after.returncode == 3
    assert "no dsup running there" in after.stderr


async def test_ctl_shutdown_waits_until_dsup_has_exited(tmp_path: Path) -> None:
    """`ctl shutdown && dsup run` was refused: shutdown did not wait."""
    slow = program("slow", "ctl_ticker.py", "--ignore-term", stop_timeout_seconds=1.0)
    cfg = write_config(tmp_path, slow)
    workers: list[int] = []
    async with dsup_run(cfg, workers) as node:
        workers.append(await running_pid(cfg, "slow:0"))
        down = await ctl("-c", str(cfg), "shutdown")
        with open_state_dir(tmp_path / "state"):  # free: a new dsup run could take it
            pass
        with anyio.fail_after(20):
            code = await node.wait()
    assert down.returncode == 0, down.stderr
    assert down.stdout.splitlines() == [
        "node ctltest: stopping every process and exiting; waiting for it to exit",
        f"dsup (pid {node.pid}) has exited",
    ]
    assert code == 0


async def test_ctl_shutdown_during_a_shutdown_waits_for_that_exit(tmp_path: Path) -> None:
    """A second shutdown exited 3 at once; --timeout did not bound the wait."""
    stubborn = program("stubborn", "ctl_ticker.py", "--ignore-term", stop_timeout_seconds=60.0)
    cfg = write_config(tmp_path, stubborn)
    workers: list[int] = []
    async with dsup_run(cfg, workers) as node:
        workers.append(await running_pid(cfg, "stubborn:0"))
        first = await ctl("-c", str(cfg), "shutdown", "--no-wait")
        bounded = await ctl("-c", str(cfg), "--timeout", "0.5", "shutdown")
        again = await ctl("-c", str(cfg), "--json", "shutdown", "--no-wait")
        async with ctl_process(cfg, "shutdown") as waiter:
            assert waiter.stdout is not None
            with anyio.fail_after(20):
                said = await waiter.stdout.receive()  # it is waiting
                os.kill(workers[0], signal.SIGKILL)  # what held the shutdown up
                waited = await waiter.wait()
            said += b"".join([chunk async for chunk in waiter.stdout])
        with anyio.fail_after(20):
            await node.wait()
    assert first.returncode == 0, first.stderr
    assert bounded.returncode == 1
    assert f"dsup (pid {node.pid}) has not exited within 0.5 s" in bounded.stderr
    waiting = f"dsup (pid {node.pid}) is already shutting down; waiting for it to exit"
    assert bounded.stdout.splitlines() == [waiting]
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {
        "node": None,
        "pid": node.pid,
        "wait_seconds": None,
        "already_shutting_down": True,
    }
    assert waited == 0
    assert said.decode().splitlines() == [
        waiting,
        f"dsup (pid {node.pid}) has exited",
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run ctl as another uid")
def test_ctl_permission_denied_names_the_owner_of_state_dir() -> None:
    """Another uid got a bare "Permission denied"."""
    base = Path(tempfile.mkdtemp(prefix="dsup-perm-"))  # not under pytest's 0700 tmp
    try:
        base.chmod(0o755)
        (base / "state").mkdir(mode=0o700)
        sock = base / "state" / "control.sock"
        code = (
            "import os, sys\n"
            "from supervisor import cli\n"
            "from supervisor.control import ctl\n"
            f"args = cli.build_parser().parse_args(['ctl', '--socket', {str(sock)!r}, 'status'])\n"
            "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
            "sys.exit(ctl.main(args))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
        )
    finally:
        shutil.rmtree(base)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"dsup ctl: {sock}: Permission denied; state_dir belongs to uid 0 (root); "
        "run ctl as that user or root"
    )


_IMPOSTOR = """
import json, os, socket, sys
os.setgroups([]); os.setgid(65534); os.setuid(65534)
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[1])
server.listen()
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    with conn:
        if conn.recv(65536):
            result = {"node": "fake-node", "processes": []}
            conn.sendall(json.dumps({"id": 1, "ok": True, "result": result}).encode() + b"\\n")
            print("answered", flush=True)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a server as another uid")
@pytest.mark.parametrize("verb", [["--json", "status"], ["stop", "all"]])
def test_ctl_refuses_a_server_of_another_user_in_its_socket_place(verb: list[str]) -> None:
    """After a ``chmod 777`` of state_dir another user's server answered ctl (as root)."""
    base = Path(tempfile.mkdtemp(prefix="dsup-impostor-"))  # not under pytest's 0700 tmp
    try:
        base.chmod(0o755)
        state = base / "state"
        state.mkdir()
        state.chmod(0o777)  # the hole: another user can put a socket here
        sock = state / "control.sock"
        with subprocess.Popen(
            [sys.executable, "-c", _IMPOSTOR, str(sock)],
            stdout=subprocess.PIPE,
            text=True,
        ) as impostor:
            assert impostor.stdout is not None
            try:
                assert impostor.stdout.readline() == "ready\n"
                done = subprocess.run(
                    [sys.executable, "-m", "supervisor", "ctl", "--socket", str(sock), *verb],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
            finally:
                impostor.kill()
            assert impostor.stdout.read() == ""  # no request reached it
    finally:
        shutil.rmtree(base)
    assert done.returncode == 1
    said = done.stdout + done.stderr  # --json says errors on stdout too
    assert "fake-node" not in said  # its answer is never shown
    assert "runs as uid 65534" in said
    assert "state_dir belongs to uid 0" in said
    assert "Traceback" not in said


async def test_ctl_reload_and_shutdown(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, TICK)
    async with running_node(cfg) as node:
        write_config(tmp_path, TICK, CRASH)
        reload = await ctl("-c", str(cfg), "reload")
        down = await ctl("-c", str(cfg), "shutdown", "--no-wait")  # in-process: no exit
        with anyio.fail_after(10):
            await node.fleet.wait_shutdown_requested()
    assert reload.returncode == 0, reload.stderr
    assert reload.stdout.splitlines() == [
        "added: crash",
        "removed: -",
        "changed: -",
        "updated: -",
        "unchanged: tick",
    ]
    assert down.returncode == 0
    assert "ctltest" in down.stdout


def test_render_status_formats_uptime_exit_memory_and_cpu() -> None:
    report = {
        "at": 10_000.0,
        "processes": [
            {
                "status": {
                    "process": "web:0",
                    "state": "RUNNING",
                    "pid": 4242,
                    "started_at": 10_000.0 - 3723,
                    "restarts": 2,
                    "last_exit_code": None,
                    "last_exit_signal": 9,
                },
                "rss_bytes": 50 * 1024 * 1024,
                "cpu_percent": 12.345,
            },
            {
                "status": {
                    "process": "batch-job:11",
                    "state": "EXITED",
                    "pid": None,
                    "started_at": None,
                    "restarts": 0,
                    "last_exit_code": 1,
                    "last_exit_signal": None,
                    "reason": "exited",
                },
                "rss_bytes": None,
                "cpu_percent": None,
            },
        ],
    }
    assert render_status(report).splitlines() == [
        "NAME          STATE    PID   UPTIME  RESTARTS  LAST EXIT  MEMORY    CPU    INFO",
        "web:0         RUNNING  4242  1h02m   2         SIGKILL    50.0 MiB  12.3%",
        "batch-job:11  EXITED   -     -       0         exit 1     -         -      exited",
    ]
    fatal = {"process": "bad:0", "state": "FATAL", "last_error": "No such file: /x\x1b[2J"}
    report["processes"] = [{"status": fatal}]
    assert render_status(report).splitlines()[1].endswith("  No such file: /x")  # no ESC
    narrow = render_status(report, width=60).splitlines()  # INFO goes under its row
    assert narrow[0].endswith("  LAST EXIT  MEMORY  CPU")
    assert narrow[2] == "    No such file: /x"
    assert max(len(line) for line in narrow) <= 60
    assert render_status(report, width=20).splitlines() == [
        "NAME   STATE  PID",
        "bad:0  FATAL  -",
        "    No such file: /x",
    ]
    wide = render_status(report, width=80).splitlines()
    assert wide[1].endswith("  No such file: /x")


def test_render_logs_reports_drops_even_without_lines() -> None:
    """A follow's drops-only event is shown, with a singular for one line."""
    one = {"process": "a:0", "stream": "stdout", "lines": [], "dropped": 1}
    assert render_logs([one], many=False) == "[1 line dropped: this client fell behind]"
    many = {"process": "a:0", "stream": "stdout", "lines": ["x"], "dropped": 5}
    assert render_logs([many], many=True).splitlines() == [
        "a:0 | [5 lines dropped: this client fell behind]",
        "a:0 | x",
    ]


def test_render_status_never_exceeds_the_width_with_long_reasons() -> None:
    """FATAL rows were 83 characters in an 80-column terminal."""
    long = "exited too quickly (exit code 7 within start_seconds); gave up after 3 tries"
    rows = [
        {
            "status": {
                "process": f"web:{i}",
                "state": "RUNNING",
                "pid": 40000 + i,
                "started_at": 1000.0,
                "restarts": 12,
            },
            "rss_bytes": 812 * 1024 * 1024,
            "cpu_percent": 100.0,
        }
        for i in range(24)
    ]
    rows.append(
        {
            "status": {
                "process": "missing-binary:1",
                "state": "FATAL",
                "last_error": long,
                "last_exit_code": 127,
                "restarts": 3,
            }
        }
    )
    report = {"node": "n", "at": 5000.0, "processes": rows}
    lines = render_status(report, width=80).splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0].endswith("LAST EXIT  MEMORY     CPU")  # nothing gave way for nothing
    below = [line for line in lines if line.startswith("    ")]
    assert " ".join(line.strip() for line in below) == long  # whole, under its row
    assert lines[-len(below) - 1].startswith("missing-binary:1  FATAL")
    assert render_status(report).splitlines()[-1].endswith(long)  # no width: on its row


@pytest.mark.parametrize("width", [100, 80, 60, 40, 30])
def test_render_status_in_a_narrow_terminal_keeps_info_and_whole_headers(width: int) -> None:
    """At 60 columns INFO was dropped; at 40 the header read `RES`."""
    why = "exited too quickly (exit code 7); 1 failed start in a row of 5 allowed"
    rows = [
        {
            "status": {"process": "slowback:0", "state": "BACKOFF", "restarts": 1, "reason": why},
        },
        {
            "status": {"process": "web:0", "state": "RUNNING", "pid": 41234, "started_at": 1.0},
            "rss_bytes": 12345678,
            "cpu_percent": 1.5,
        },
        {"status": {"process": "job:0", "state": "EXITED", "reason": "exit code 0; done"}},
    ]
    lines = render_status({"at": 1000.0, "processes": rows}, width=width).splitlines()
    assert max(len(line) for line in lines) <= width
    heads = {"NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT", "MEMORY", "CPU", "INFO"}
    header = [cell.strip() for cell in lines[0].split("  ") if cell.strip()]
    assert set(header) <= heads
    assert header[:2] == ["NAME", "STATE"]
    at = lines.index(next(line for line in lines if line.startswith("slowback:0 ")))
    under = [line.strip() for line in lines[at + 1 :] if line.startswith("    ")]
    on_row = lines[at].endswith(why)
    assert on_row or " ".join(under).startswith(why), lines
    assert any("exit code 0; done" in line for line in lines)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-5, "0s"), (59.9, "59s"), (65, "1m05s"), (3723, "1h02m"), (3 * 86400 + 4 * 3600, "3d04h")],
)
def test_humanize_duration_keeps_two_largest_units(seconds: float, text: str) -> None:
    assert humanize.duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "-"), ("7", "-"), (512, "512 B"), (1536, "1.5 KiB"), (3 * 1024**3, "3.0 GiB")],
)
def test_humanize_memory_uses_binary_units(value: object, text: str) -> None:
    assert humanize.memory(value) == text


def test_humanize_cpu_falls_back() -> None:
    assert (humanize.cpu(None), humanize.cpu(0), humanize.cpu(12.345)) == ("-", "0.0%", "12.3%")


LONG = "a" * 64


@pytest.mark.parametrize("width", [120, 80, 60, 40, 20])
def test_render_status_cuts_long_names_in_the_middle_and_fits_the_width(width: int) -> None:
    """64-character names dropped every column at 80 and overflowed below."""
    why = "exited too quickly (exit code 7); 1 failed start in a row of 10 allowed"
    rows: list[dict[str, object]] = [
        {
            "status": {"process": f"{LONG}:{i}", "state": "RUNNING", "pid": 4000 + i},
            "rss_bytes": 1 << 20,
            "cpu_percent": 0.0,
        }
        for i in range(2)
    ]
    rows.append({"status": {"process": "slowback:0", "state": "BACKOFF", "reason": why}})
    lines = render_status({"at": 1000.0, "processes": rows}, width=width).splitlines()
    assert max(len(line) for line in lines) <= width, lines
    names = [line.split("  ")[0] for line in lines[1:3]]
    assert names[0] != names[1]
    assert [name[-2:] for name in names] == [":0", ":1"]
    assert all(name.startswith("aa") and "…" in name for name in names)
    if width >= 80:  # NAME gave way before any column
        assert "PID" in lines[0]
        assert "LAST EXIT" in lines[0]
    assert any(line.startswith("slowback:0") for line in lines)


@pytest.mark.parametrize(
    ("name", "width", "short"),
    [
        ("web:1", 10, "web:1"),
        ("abcdefghij:12", 10, "abc…hij:12"),
        ("abcdefghijkl", 7, "abc…jkl"),
        ("abcdefgh:3", 5, "a…h:3"),
        ("abcdefgh:3", 3, "ab…"),
        ("a:b:c:d", 5, "a:…:d"),
    ],
)
def test_humanize_short_name_keeps_the_process_suffix(name: str, width: int, short: str) -> None:
    assert humanize.short_name(name, width) == short
    assert len(short) <= width
