"""Tests of the command surface, through the real control socket, on a real fleet.

Every test runs real worker processes (``tests/workers/ctl_*.py``) under an
in-process node built as ``dsup run`` builds it.
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
from supervisor.commands.reports import LogLines
from supervisor.commands.service import CommandService
from supervisor.errors import AccessDenied, InvalidArgument
from supervisor.events import ProcessState
from supervisor.output.logfile import log_paths
from supervisor.process.policy import describe_exit
from tests._control import (
    ask,
    connect,
    error_type,
    program,
    result,
    running_node,
    states,
    write_config,
)
from tests._ledger_full import ledger_full
from tests._wait import eventually, wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from supervisor.state.records import AuditRecord
    from tests._control import Node

TICK = program("tick", "ctl_ticker.py", "0.05", numprocs=2)
SOLO = program("solo", "ctl_ticker.py", "0.05", "--stderr")
CRASH = program("crash", "ctl_crash.py", autostart=False)


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


def _outcomes(res: dict[str, object]) -> dict[str, tuple[str, str]]:
    procs = res["processes"]
    assert isinstance(procs, list)
    return {p["process"]: (p["outcome"], p["state"]) for p in procs}


async def _audit(node: Node, limit: int = 50) -> list[AuditRecord]:
    return await anyio.to_thread.run_sync(lambda: node.ledger.audit_rows(limit))


# -- status ----------------------------------------------------------------------


async def test_status_lists_every_process_with_pid_and_memory(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, TICK, CRASH)) as node:
        await _all_running(node, "tick:0", "tick:1")
        report = result(await ask(node.socket, "status"))
        rows = report["processes"]
        assert isinstance(rows, list)
        by_name = {r["status"]["process"]: r for r in rows}
        assert list(by_name) == ["tick:0", "tick:1", "crash:0"]
        for name in ("tick:0", "tick:1"):
            assert by_name[name]["status"]["state"] == "RUNNING"
            assert by_name[name]["status"]["pid"] == _pids(node)[name]
            assert by_name[name]["rss_bytes"] > 1_000_000
            assert by_name[name]["nprocs"] == 1
        assert by_name["crash:0"]["status"]["state"] == "STOPPED"
        assert by_name["crash:0"]["rss_bytes"] is None
        one = result(await ask(node.socket, "status", target="tick:1"))["processes"]
        assert isinstance(one, list)
        assert [r["status"]["process"] for r in one] == ["tick:1"]


# -- start / stop / restart / signal --------------------------------------------


async def test_stop_and_start_by_process_program_glob_and_all(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, TICK, SOLO)) as node:
        await _all_running(node)
        res = result(await ask(node.socket, "stop", target="tick:1"))
        assert _outcomes(res) == {"tick:1": ("ok", "STOPPED")}
        assert states(node) == {"tick:0": "RUNNING", "tick:1": "STOPPED", "solo:0": "RUNNING"}

        res = result(await ask(node.socket, "stop", target="ti*"))
        assert _outcomes(res) == {"tick:0": ("ok", "STOPPED"), "tick:1": ("unchanged", "STOPPED")}

        res = result(await ask(node.socket, "start", target="tick"))
        assert _outcomes(res) == {"tick:0": ("ok", "RUNNING"), "tick:1": ("ok", "RUNNING")}

        before = _pids(node)
        res = result(await ask(node.socket, "restart", target="all"))
        assert {k: v[0] for k, v in _outcomes(res).items()} == dict.fromkeys(before, "ok")
        after = _pids(node)
        assert all(after[n] is not None and after[n] != before[n] for n in before)

        res = result(await ask(node.socket, "start", target="solo"))
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
        res = result(await ask(node.socket, "stop", target="all"))
        took = anyio.current_time() - began
        assert set(_outcomes(res).values()) == {("ok", "STOPPED")}
        assert took < 5.0  # one at a time would take 6 s or more


async def test_start_of_a_crashing_program_fails_and_is_audited(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, TICK, CRASH)) as node:
        res = result(await ask(node.socket, "start", target="crash"))
        (outcome, state), *_ = _outcomes(res).values()
        assert outcome == "failed"
        assert state in ("BACKOFF", "FATAL", "EXITED")
        procs = res["processes"]
        assert isinstance(procs, list)
        assert procs[0]["message"] == describe_exit(3, None)  # as status says it
        row = (await _audit(node))[0]
        assert (row.command, row.target, row.outcome) == ("start", "crash", "failed")
        assert "crash:0: exit code 3" in row.detail
        assert "1 process" in row.detail
        assert "1 processes" not in row.detail


async def test_unknown_target_is_an_error_and_audited(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, TICK)) as node:
        reply = await ask(node.socket, "restart", target="nosuch*")
        assert error_type(reply) == "UnknownProcess"
        row = (await _audit(node))[0]
        assert (row.command, row.target, row.outcome) == ("restart", "nosuch*", "failed")


async def test_signal_reaches_the_worker(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, SOLO)) as node:
        await _all_running(node)

        async def last_lines() -> list[str]:
            logs = result(await ask(node.socket, "tail", target="solo", lines=50))["logs"]
            assert isinstance(logs, list)
            lines: list[str] = logs[0]["lines"]
            return lines

        async def handler_set() -> bool:  # RUNNING is a timer; "ready" follows the handler
            return any(line.startswith(("ready", "tick")) for line in await last_lines())

        await eventually(handler_set)
        res = result(await ask(node.socket, "signal", target="solo", signal="usr1"))
        assert _outcomes(res) == {"solo:0": ("ok", "RUNNING")}

        async def got_it() -> bool:
            return "got SIGUSR1" in await last_lines()

        await eventually(got_it)
        reply = await ask(node.socket, "signal", target="solo", signal="NOTASIGNAL")
        assert error_type(reply) == "InvalidArgument"
        assert (await _audit(node))[0].outcome == "refused"
        # A real-time signal Python's enum does not name (35-63) reaches it too:
        # its default action ends the worker, and LAST EXIT names it.
        res = result(await ask(node.socket, "signal", target="solo", signal="rtmin+6"))
        assert _outcomes(res) == {"solo:0": ("ok", "RUNNING")}
        (child,) = node.fleet.resolve("solo")
        await wait_until(lambda: child.status().last_exit_signal == signal.SIGRTMIN + 6)


async def test_signal_to_a_stopped_process_fails(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, CRASH)) as node:
        res = result(await ask(node.socket, "signal", target="crash", signal="HUP"))
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

        async def last(stream: str, n: int) -> list[str]:
            logs = result(await ask(node.socket, "tail", target="solo", lines=n, stream=stream))
            entries = logs["logs"]
            assert isinstance(entries, list)
            assert entries[0]["stream"] == stream
            lines: list[str] = entries[0]["lines"]
            return lines

        async def three() -> bool:
            return len(await last("stderr", 3)) == 3

        await eventually(three)
        out, err = await last("stdout", 3), await last("stderr", 3)
        assert len(out) == 3
        assert all(line.startswith("tick ") for line in out)
        assert all(line.startswith("err tick ") for line in err)
        numbers = [int(line.split()[-1]) for line in out]
        assert numbers == sorted(numbers)
        assert error_type(await ask(node.socket, "tail", target="solo", lines=-1)) == (
            "InvalidArgument"
        )


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


async def test_follow_streams_new_lines_until_the_client_leaves(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, SOLO)) as node:
        await _all_running(node)
        async with connect(node.socket) as client:
            await client.send("tail", target="solo", lines=2, follow=True)
            assert (await client.receive())["streaming"] is True
            seen: list[int] = []
            while len(seen) < 10:
                event = (await client.receive())["event"]
                assert isinstance(event, dict)
                assert event["process"] == "solo:0"
                seen += [int(line.split()[-1]) for line in event["lines"]]
            assert seen == sorted(seen)
            assert seen[-1] - seen[0] >= 9  # new lines kept coming
            assert node.server.clients == 1
        # The client left mid-stream: its connection task ends, nothing leaks.
        await wait_until(lambda: node.server.clients == 0)
        assert result(await ask(node.socket, "status"))["node"] == "ctltest"


async def test_concurrent_clients_each_get_their_answer(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, TICK, SOLO)) as node:
        await _all_running(node)
        answers: dict[int, dict[str, object]] = {}

        async def one(i: int) -> None:
            if i % 5 == 0:  # some followers hold connections open meanwhile
                async with connect(node.socket) as client:
                    await client.send("tail", target="tick", follow=True)
                    answers[i] = await client.receive()
                    await client.receive()
                return
            answers[i] = await ask(node.socket, "status" if i % 2 else "tail", target="tick")

        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(one, i)
        assert len(answers) == 30
        assert all(a["ok"] is True for a in answers.values())
        await wait_until(lambda: node.server.clients == 0)


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
        res = result(await ask(node.socket, "reload"))
        assert res == {
            "added": ["added"],
            "removed": ["drop"],
            "changed": ["change"],
            "updated": [],
            "unchanged": ["keep"],
        }
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
        reply = await ask(node.socket, "reload")
        assert error_type(reply) == "ConfigError"
        error = reply["error"]
        assert isinstance(error, dict)
        assert "programs.bad.restart" in str(error["message"])
        assert _pids(node) == before
        row = (await _audit(node))[0]
        assert (row.command, row.outcome) == ("reload", "refused")


async def test_reload_refuses_to_move_the_state_dir(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, TICK)
    async with running_node(cfg) as node:
        cfg.write_text(cfg.read_text().replace('/state"', '/elsewhere"'))
        reply = await ask(node.socket, "reload")
        assert error_type(reply) == "ConfigError"
        assert "state_dir" in str(reply["error"])


# -- shutdown, access and audit --------------------------------------------------


async def test_shutdown_stops_the_fleet(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, TICK)
    async with running_node(cfg) as node:
        await _all_running(node)
        res = result(await ask(node.socket, "shutdown"))
        # Stops take at most stop_timeout_seconds (3 s) and a margin; the last sweep too.
        assert res == {"node": "ctltest", "pid": os.getpid(), "wait_seconds": 23.0}
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


async def test_audit_caps_long_targets_and_spells_reloads(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, TICK)
    async with running_node(cfg) as node:
        long = "t" * 5000
        refused = await ask(node.socket, "stop", target=long)
        assert error_type(refused) in ("UnknownProcess", "InvalidArgument")
        write_config(tmp_path, TICK, CRASH)
        result(await ask(node.socket, "reload"))
        result(await ask(node.socket, "reload"))
        write_config(tmp_path, TICK + 'relay = "none"\n', CRASH)
        result(await ask(node.socket, "reload"))
        rows = await _audit(node)
    assert [r.detail for r in rows[:3]] == ["updated tick", "nothing changed", "added crash"]
    stop = rows[3]
    assert stop.command == "stop"
    assert stop.target == "t" * 200 + "... (5000 characters)"
    assert len(stop.detail) < 1100


async def test_a_lone_surrogate_in_a_target_is_a_protocol_error(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, TICK)) as node, connect(node.socket) as client:
        for args in (b'{"target": "\\ud800"}', b'{"target": "x", "signal": "\\udfff"}'):
            cmd = b"signal" if b"signal" in args else b"stop"
            await client.send_raw(b'{"cmd": "' + cmd + b'", "args": ' + args + b"}\n")
            reply = await client.receive()
            assert error_type(reply) == "ControlProtocolError", reply
            assert "lone surrogate" in str(reply["error"])
        assert result(await client.ask("status", target="tick:0"))["node"] == "ctltest"


async def test_first_status_of_a_busy_process_shows_its_cpu(tmp_path: Path) -> None:
    """CPU use is measured against an earlier sample; the first status takes two."""
    busy = program("busy", "ctl_busy.py", start_seconds=0.1)
    async with running_node(write_config(tmp_path, busy)) as node:
        await _all_running(node)
        rows = result(await ask(node.socket, "status"))["processes"]
        assert isinstance(rows, list)
        assert rows[0]["cpu_percent"] > 10.0, rows[0]


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
        await ask(node.socket, "status", target="tick:0")
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
            assert result(await ask(node.socket, "status"))
            for cmd in ("stop", "start", "restart"):
                res = result(await ask(node.socket, cmd, target="tick"))
                assert {o for o, _ in _outcomes(res).values()} == {"ok"}, (cmd, res)
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
