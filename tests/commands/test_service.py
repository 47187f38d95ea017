"""Tests of the command surface itself: CommandService's typed results on a real fleet.

Every test runs real worker processes (``tests/workers/ctl_*.py``) under an in-process
node built as ``dsup run`` builds it, and calls the service as any front end does; the
control socket's wire form is tested in tests/control/.
"""

from __future__ import annotations

import getpass
import os
import pwd
import signal
import tracemalloc
from typing import TYPE_CHECKING

import anyio
import pytest

from supervisor.commands.access import AccessLevel, Actor, Command
from supervisor.commands.action import parse_signal
from supervisor.commands.follow_buffer import FollowBuffer
from supervisor.commands.reports import ActionReport, LogLines, ShutdownReport
from supervisor.commands.service import CommandService
from supervisor.errors import AccessDenied, ConfigError, InvalidArgument, UnknownProcess
from supervisor.events import ProcessState
from supervisor.output.logfile import log_paths
from supervisor.process.policy import describe_exit
from tests._control import program, running_node, states, write_config
from tests._ledger_full import ledger_full
from tests._wait import eventually, wait_until
from tests.tasks._tasks import task_program

if TYPE_CHECKING:
    from pathlib import Path

    from supervisor.events import Stream
    from supervisor.state.records import AuditRecord
    from tests._control import Node

TICK = program("tick", "ctl_ticker.py", "0.05", numprocs=2)
SOLO = program("solo", "ctl_ticker.py", "0.05", "--stderr")
CRASH = program("crash", "ctl_crash.py", autostart=False)
ME = Actor.local()


def _me() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return getpass.getuser()


async def _all_running(node: Node, *names: str) -> None:
    def ready() -> bool:
        now = states(node)
        return all(now[n] == "RUNNING" for n in names or now)

    await wait_until(ready)


def _pids(node: Node) -> dict[str, int | None]:
    return {c.name: c.status().pid for c in node.fleet.processes()}


def _outcomes(report: ActionReport) -> dict[str, tuple[str, str]]:
    return {r.process: (r.outcome, r.state.value) for r in report.processes}


async def _last_lines(node: Node, target: str, n: int, stream: Stream = "stdout") -> list[str]:
    (log,) = (await node.service.tail(ME, target, lines=n, stream=stream)).logs
    assert log.stream == stream
    return list(log.lines)


async def _audit(node: Node, limit: int = 50) -> list[AuditRecord]:
    return await anyio.to_thread.run_sync(lambda: node.ledger.audit_rows(limit))


# -- status ----------------------------------------------------------------------


async def test_status_lists_every_process_with_pid_and_memory(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, TICK, CRASH)) as node:
        await _all_running(node, "tick:0", "tick:1")
        report = await node.service.status(ME)
        assert report.node == "ctltest"
        by_name = {info.status.process: info for info in report.processes}
        assert list(by_name) == ["tick:0", "tick:1", "crash:0"]
        for name in ("tick:0", "tick:1"):
            info = by_name[name]
            assert (info.status.state, info.status.pid) == (ProcessState.RUNNING, _pids(node)[name])
            assert info.rss_bytes is not None
            assert info.rss_bytes > 1_000_000
            assert info.nprocs == 1
        assert by_name["crash:0"].status.state is ProcessState.STOPPED
        assert by_name["crash:0"].rss_bytes is None
        one = (await node.service.status(ME, "tick:1")).processes
        assert [info.status.process for info in one] == ["tick:1"]


# -- start / stop / restart / signal --------------------------------------------


async def test_stop_and_start_by_process_program_glob_and_all(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, TICK, SOLO)) as node:
        await _all_running(node)
        res = await node.service.stop(ME, "tick:1")
        assert _outcomes(res) == {"tick:1": ("ok", "STOPPED")}
        assert states(node) == {"tick:0": "RUNNING", "tick:1": "STOPPED", "solo:0": "RUNNING"}

        res = await node.service.stop(ME, "ti*")
        assert _outcomes(res) == {"tick:0": ("ok", "STOPPED"), "tick:1": ("unchanged", "STOPPED")}

        res = await node.service.start(ME, "tick")
        assert _outcomes(res) == {"tick:0": ("ok", "RUNNING"), "tick:1": ("ok", "RUNNING")}

        before = _pids(node)
        res = await node.service.restart(ME, "all")
        assert {k: v[0] for k, v in _outcomes(res).items()} == dict.fromkeys(before, "ok")
        after = _pids(node)
        assert all(after[n] is not None and after[n] != before[n] for n in before)

        res = await node.service.start(ME, "solo")
        assert _outcomes(res) == {"solo:0": ("unchanged", "RUNNING")}


async def test_stop_all_stops_in_parallel(tmp_path: Path) -> None:
    # Each process takes 1 s to stop (it ignores SIGTERM until SIGKILL): six in a
    # row would take six seconds.
    slow = program(
        "slow",
        "ctl_ticker.py",
        "--ignore-term",
        numprocs=6,
        stop_timeout_seconds=1.0,
    )
    async with running_node(write_config(tmp_path, slow)) as node:
        await _all_running(node)
        began = anyio.current_time()
        res = await node.service.stop(ME, "all")
        took = anyio.current_time() - began
        assert set(_outcomes(res).values()) == {("ok", "STOPPED")}
        assert took < 5.0  # one at a time would take 6 s or more


async def test_start_of_a_crashing_program_fails_and_is_audited(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, TICK, CRASH)) as node:
        res = await node.service.start(ME, "crash")
        assert (res.command, res.target, res.is_ok) == (Command.START, "crash", False)
        (one,) = res.processes
        assert one.outcome == "failed"
        assert one.state in (ProcessState.BACKOFF, ProcessState.FATAL, ProcessState.EXITED)
        assert one.message == describe_exit(3, None)  # as status says it
        row = (await _audit(node))[0]
        assert (row.command, row.target, row.outcome) == ("start", "crash", "failed")
        assert "crash:0: exit code 3" in row.detail
        assert "1 process" in row.detail
        assert "1 processes" not in row.detail


async def test_unknown_target_is_an_error_and_audited(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, TICK)) as node:
        with pytest.raises(UnknownProcess) as unknown:
            await node.service.restart(ME, "nosuch*")
        assert unknown.value.name == "nosuch*"
        row = (await _audit(node))[0]
        assert (row.command, row.target, row.outcome) == ("restart", "nosuch*", "failed")


async def test_signal_reaches_the_worker(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, SOLO)) as node:
        await _all_running(node)

        async def handler_set() -> bool:  # RUNNING is a timer; "ready" follows the handler
            lines = await _last_lines(node, "solo", 50)
            return any(line.startswith(("ready", "tick")) for line in lines)

        await eventually(handler_set)
        res = await node.service.signal(ME, "solo", "usr1")
        assert (res.command, _outcomes(res)) == (Command.SIGNAL, {"solo:0": ("ok", "RUNNING")})

        async def got_it() -> bool:
            return "got SIGUSR1" in await _last_lines(node, "solo", 50)

        await eventually(got_it)
        with pytest.raises(InvalidArgument):
            await node.service.signal(ME, "solo", "NOTASIGNAL")
        assert (await _audit(node))[0].outcome == "refused"
        # A real-time signal Python's enum does not name (35-63) reaches it too:
        # its default action ends the worker, and LAST EXIT names it.
        res = await node.service.signal(ME, "solo", "rtmin+6")
        assert _outcomes(res) == {"solo:0": ("ok", "RUNNING")}
        (child,) = node.fleet.resolve("solo")
        await wait_until(lambda: child.status().last_exit_signal == signal.SIGRTMIN + 6)


async def test_signal_to_a_stopped_process_fails(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, CRASH)) as node:
        res = await node.service.signal(ME, "crash", "HUP")
        assert _outcomes(res) == {"crash:0": ("failed", "STOPPED")}


def test_parse_signal_accepts_names_numbers_and_prefixes() -> None:
    assert parse_signal("term") is signal.SIGTERM
    assert parse_signal("SIGHUP") is signal.SIGHUP
    assert parse_signal(" 10 ") is signal.SIGUSR1
    assert parse_signal(9) is signal.SIGKILL
    assert parse_signal("rtmin") == signal.SIGRTMIN
    for bad in ("", "SIGNOPE", "999", -1):
        with pytest.raises(InvalidArgument):
            parse_signal(bad)


# -- tail ------------------------------------------------------------------------


async def test_tail_returns_the_last_lines_of_each_stream(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, SOLO)) as node:
        await _all_running(node)

        async def three() -> bool:
            return len(await _last_lines(node, "solo", 3, "stderr")) == 3

        await eventually(three)
        out = await _last_lines(node, "solo", 3, "stdout")
        err = await _last_lines(node, "solo", 3, "stderr")
        assert len(out) == 3
        assert all(line.startswith("tick ") for line in out)
        assert all(line.startswith("err tick ") for line in err)
        numbers = [int(line.split()[-1]) for line in out]
        assert numbers == sorted(numbers)
        with pytest.raises(InvalidArgument):
            await node.service.tail(ME, "solo", lines=-1)


async def test_follow_bounds_in_bytes_what_a_stalled_client_has_not_read(tmp_path: Path) -> None:
    """A follower that did not read held 256 chunks of up to 1 MiB each."""
    bound = 256 * 1024
    # The log never rotates here: a follower that lost a whole file gets an
    # estimate (a lower bound) of its lines, and this counts exactly. The flood
    # waits for SIGUSR1, then writes 32 MB at 50 MB/s and trickles: a bounded
    # footprint on disk, however slow the machine or the follower.
    flood = program("flood", "ctl_flood.py", "50", "32", log_max_bytes=2**32, log_backups=0)
    async with running_node(write_config(tmp_path, flood)) as node:
        await _all_running(node, "flood:0")
        service = CommandService(node.fleet, poll_interval=0.05, follow_buffer_bytes=bound)
        log = log_paths(node.state.log_dir, "flood:0")[0]
        await wait_until(lambda: log.exists() and log.stat().st_size > 0)  # "ready"
        (child,) = node.fleet.resolve("flood:0")
        pid = child.status().pid
        assert pid is not None
        async with service.follow(Actor.local(), "flood", lines=0) as following:
            buffer = following.lines
            assert isinstance(buffer, FollowBuffer)
            start = log.stat().st_size
            os.kill(pid, signal.SIGUSR1)
            peak = 0

            def flooded() -> bool:
                nonlocal peak
                peak = max(peak, buffer.buffered_bytes)
                # The flood can outrun the follower's first poll: wait for both.
                return peak >= bound // 2 and log.stat().st_size > start + 64 * bound

            await wait_until(flooded, seconds=30)
            # One read (256 KiB) of lines may land on a buffer just short of full.
            assert peak <= bound + 2 * 256 * 1024
            got = await _follow_until_a_drop(buffer)
        assert buffer.buffered_bytes == 0  # released when the client left
    # The follow began at the end of the file, maybe mid-line: skip to the first
    # chunk of two lines or more and start counting at its second line.
    start = next(i for i, (_, lines) in enumerate(got) if len(lines) > 1)
    first = got[start][1][1:]
    numbers = [(0, first), *got[start + 1 :]]
    expected = int(first[0].split()[1])
    for dropped, lines in numbers:
        expected += dropped
        batch = [int(line.split()[1]) for line in lines]
        assert batch == list(range(expected, expected + len(batch)))  # the drop count is exact
        expected += len(batch)
    assert sum(dropped for dropped, _ in numbers) > 0


async def _follow_until_a_drop(buffer: FollowBuffer) -> list[tuple[int, tuple[str, ...]]]:
    """Read chunks until lines come after a drop that follows a chunk of 2+ lines.

    The first line read may be the end of a line the follow started in; the
    test counts from the second line of the first chunk that has two.
    """
    got: list[tuple[int, tuple[str, ...]]] = []
    with anyio.fail_after(10):
        async for chunk in buffer:
            got.append((chunk.dropped, chunk.lines))
            start = next((i for i, (_, lines) in enumerate(got) if len(lines) > 1), None)
            if (
                start is not None
                and chunk.lines
                and any(dropped for dropped, _ in got[start + 1 :])
            ):
                return got
    raise AssertionError("the follow ended")


async def test_follow_hands_over_new_lines_until_the_block_exits(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, SOLO)) as node:
        await _all_running(node)
        seen: list[int] = []
        async with node.service.follow(ME, "solo", lines=2) as following:
            assert following.processes == ("solo:0",)
            with anyio.fail_after(10):
                async for chunk in following.lines:
                    assert (chunk.process, chunk.stream) == ("solo:0", "stdout")
                    seen += [int(line.split()[-1]) for line in chunk.lines]
                    if len(seen) >= 10:
                        break
        assert seen == sorted(seen)
        assert seen[-1] - seen[0] >= 9  # new lines kept coming
        assert isinstance(following.lines, FollowBuffer)
        assert following.lines.buffered_bytes == 0  # released when the block exited


# -- reload ----------------------------------------------------------------------


async def test_reload_adds_removes_and_restarts_only_what_changed(tmp_path: Path) -> None:
    keep = program("keep", "ctl_ticker.py", "0.5")
    change = program("change", "ctl_ticker.py", "0.5")
    drop = program("drop", "ctl_ticker.py", "0.5")
    cfg = write_config(tmp_path, keep, change, drop)
    async with running_node(cfg) as node:
        await _all_running(node)
        before = _pids(node)
        changed = program("change", "ctl_ticker.py", "0.25")
        added = program("added", "ctl_ticker.py", "0.5")
        write_config(tmp_path, keep, changed, added)
        res = await node.service.reload(ME)
        assert (res.added, res.removed, res.changed, res.updated, res.unchanged) == (
            ("added",),
            ("drop",),
            ("change",),
            (),
            ("keep",),
        )
        await _all_running(node)
        after = _pids(node)
        assert set(after) == {"keep:0", "change:0", "added:0"}
        assert after["keep:0"] == before["keep:0"]
        assert after["change:0"] != before["change:0"]
        assert (await _audit(node))[0].outcome == "ok"


async def test_reload_of_a_broken_config_leaves_the_fleet_alone(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, TICK)
    async with running_node(cfg) as node:
        await _all_running(node)
        before = _pids(node)
        text = cfg.read_text()
        cfg.write_text(text + '\n[programs.bad]\ncommand = []\nrestart = "sometimes"\n')
        with pytest.raises(ConfigError) as bad:
            await node.service.reload(ME)
        assert "programs.bad.restart" in {issue.key for issue in bad.value.issues}
        assert _pids(node) == before
        row = (await _audit(node))[0]
        assert (row.command, row.outcome) == ("reload", "refused")


async def test_reload_refuses_to_move_the_state_dir(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, TICK)
    async with running_node(cfg) as node:
        cfg.write_text(cfg.read_text().replace('/state"', '/elsewhere"'))
        with pytest.raises(ConfigError, match="state_dir"):
            await node.service.reload(ME)


# -- shutdown, access and audit --------------------------------------------------


async def test_shutdown_stops_the_fleet(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, TICK)
    async with running_node(cfg) as node:
        await _all_running(node)
        res = await node.service.shutdown(ME)
        # Stops take at most stop_timeout_seconds (3 s) and a margin; the last sweep too.
        assert res == ShutdownReport(node="ctltest", pid=os.getpid(), wait_seconds=23.0)
        with anyio.fail_after(10):
            await node.fleet.wait_shutdown_requested()
        # The server stopped accepting commands once its answer was out.
        await wait_until(lambda: not node.socket.exists())
        row = (await _audit(node))[0]
        assert (row.actor, row.source, row.command, row.outcome) == (
            _me(),
            "local",
            "shutdown",
            "ok",
        )
        assert row.detail == "node ctltest shutting down"


async def test_shutdown_wait_covers_the_tasks_under_way_then_the_fleet(tmp_path: Path) -> None:
    # A oneshot task's tree is stopped first (6 s and a 5 s margin), then every
    # process in parallel (6 s and 5 s), then the last sweep and the exit (15 s).
    job = task_program("job", "echo", stop_timeout_seconds=6.0)
    async with running_node(write_config(tmp_path, TICK, job)) as node:
        res = await node.service.shutdown(ME)
        assert res.wait_seconds == (6 + 5) + (6 + 5) + 15


async def test_audit_caps_long_targets_and_spells_reloads(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, TICK)
    async with running_node(cfg) as node:
        long = "t" * 5000
        with pytest.raises((UnknownProcess, InvalidArgument)):
            await node.service.stop(ME, long)
        write_config(tmp_path, TICK, CRASH)
        await node.service.reload(ME)
        await node.service.reload(ME)
        write_config(tmp_path, TICK + 'relay = "none"\n', CRASH)
        await node.service.reload(ME)
        rows = await _audit(node)
    assert [r.detail for r in rows[:3]] == ["updated tick", "nothing changed", "added crash"]
    stop = rows[3]
    assert stop.command == "stop"
    assert stop.target == "t" * 200 + "... (5000 characters)"
    assert len(stop.detail) < 1100


async def test_first_status_of_a_busy_process_shows_its_cpu(tmp_path: Path) -> None:
    """CPU use is measured against an earlier sample; the first status takes two."""
    busy = program("busy", "ctl_busy.py", start_seconds=0.1)
    async with running_node(write_config(tmp_path, busy)) as node:
        await _all_running(node)
        (info,) = (await node.service.status(ME)).processes
        assert info.cpu_percent is not None
        assert info.cpu_percent > 10.0, info


def test_every_command_declares_its_level() -> None:
    assert AccessLevel.VIEWER < AccessLevel.OPERATOR < AccessLevel.ADMIN
    levels = {c: c.required_level for c in Command}
    assert levels[Command.STATUS] == levels[Command.TAIL] == AccessLevel.VIEWER
    for c in (Command.START, Command.STOP, Command.RESTART, Command.SIGNAL):
        assert levels[c] == AccessLevel.OPERATOR
    assert levels[Command.RELOAD] == levels[Command.SHUTDOWN] == AccessLevel.ADMIN


async def test_access_levels_are_enforced_and_refusals_audited(tmp_path: Path) -> None:
    viewer = Actor(name="dana#1", source="discord", level=AccessLevel.VIEWER)
    operator = Actor(name="olga#2", source="discord", level=AccessLevel.OPERATOR)
    async with running_node(write_config(tmp_path, TICK)) as node:
        await _all_running(node)
        service = node.service
        assert len((await service.status(viewer)).processes) == 2
        with pytest.raises(AccessDenied) as denied:
            await service.stop(viewer, "tick")
        assert (denied.value.actor, denied.value.required) == ("dana#1", "OPERATOR")
        assert states(node) == {"tick:0": "RUNNING", "tick:1": "RUNNING"}
        report = await service.restart(operator, "tick:0")
        assert report.is_ok
        with pytest.raises(AccessDenied):
            await service.shutdown(operator)
        rows = [(r.actor, r.source, r.command, r.target, r.outcome) for r in await _audit(node)]
    assert rows[:4] == [
        ("olga#2", "discord", "shutdown", "", "refused"),
        ("olga#2", "discord", "restart", "tick:0", "ok"),
        ("dana#1", "discord", "stop", "tick", "refused"),
        ("dana#1", "discord", "status", "all", "ok"),
    ]


async def test_local_actor_is_the_user_name_with_admin_access(tmp_path: Path) -> None:
    actor = Actor.local()
    assert (actor.name, actor.source, actor.level) == (_me(), "local", AccessLevel.ADMIN)
    async with running_node(write_config(tmp_path, TICK)) as node:
        await node.service.status(actor, "tick:0")
        row = (await _audit(node))[0]
    assert (row.actor, row.source, row.command, row.target) == (_me(), "local", "status", "tick:0")
    assert row.at > 0


async def test_follow_buffer_keeps_a_chunk_s_cap_when_it_adds_drops() -> None:
    buffer = FollowBuffer(max_bytes=1 << 20)
    buffer.drop("w:0", "stdout", 3)
    buffer.put(LogLines(process="w:0", stream="stdout", lines=("a",), dropped=1, capped=True))
    with anyio.fail_after(5):
        chunk = await buffer.__anext__()
    assert (chunk.lines, chunk.dropped, chunk.capped) == (("a",), 4, True)
    buffer.close()


@pytest.mark.parametrize(
    "text", ["plain ascii text", "emoji \U0001f600\U0001f680 and \u4e2d\u6587"]
)
def test_follow_buffer_holds_its_bytes_whatever_the_characters(text: str) -> None:
    """The bound counted characters: emoji lines held about 4 times the bytes allowed."""
    limit = 1 << 20
    buffer = FollowBuffer(max_bytes=limit)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        n = 0
        while (room := buffer.room()) > 0:  # what a watcher does: only what fits
            lines = tuple(f"{i} {text * 4}" for i in range(n, n + min(room, 100)))
            n += len(lines)
            buffer.put(LogLines(process="w:0", stream="stdout", lines=lines))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held <= limit * 1.1
    buffer.close()


async def test_a_full_ledger_fails_no_command_and_changes_no_process(tmp_path: Path) -> None:
    """A full disk failed every command (the audit row) and made a crashing program FATAL."""
    again = program("again", "child_exit.py", "3", "0.4", restart="always", start_retries=1)
    async with running_node(write_config(tmp_path, TICK, again)) as node:
        await _all_running(node)
        slot = next(c for c in node.fleet.processes() if c.name == "again:0")
        with ledger_full(node.ledger):
            assert (await node.service.status(ME)).processes
            for act in (node.service.stop, node.service.start, node.service.restart):
                res = await act(ME, "tick")
                assert {o for o, _ in _outcomes(res).values()} == {"ok"}, res
            restarts = slot.status().restarts
            await wait_until(lambda: slot.status().restarts >= restarts + 2)  # runs went on
            assert slot.status().state is not ProcessState.FATAL
            assert node.ledger.unrecorded > 0
            # The sweep that ends a shutdown writes to the ledger too.
            assert await node.fleet.reaper.sweep(live_run_ids=_live(node)) == ()
        assert node.ledger.retry_deferred()
        rows = await _audit(node)
        assert [(r.command, r.outcome) for r in rows[:4]] == [
            ("restart", "ok"),
            ("start", "ok"),
            ("stop", "ok"),
            ("status", "ok"),
        ]


def _live(node: Node) -> set[str]:
    return {run for c in node.fleet.processes() if (run := c.status().run_id) is not None}
