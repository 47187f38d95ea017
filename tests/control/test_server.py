"""Tests of the control socket: the file, its permissions, the protocol, bad input.

The protocol fuzz runs against a small fake command service (the server's
behaviour on bad input does not depend on the fleet); everything else runs a
real node with real worker processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import struct
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.commands.access import Actor, Command
from supervisor.commands.action import parse_signal
from supervisor.commands.reports import (
    ActionReport,
    AnswerReport,
    AsksReport,
    DiscordSyncReport,
    LogFollow,
    LogLines,
    ResultsReport,
    ShutdownReport,
    StatusReport,
    TailReport,
)
from supervisor.control.server import MAX_LINE_BYTES, ControlServer
from supervisor.errors import StateDirLocked, StateDirUnsafe, UnknownQuestion
from supervisor.process.fleet import ReloadResult
from supervisor.tasks.records import TaskList, TaskRecord, TaskState
from tests._control import (
    Client,
    ask,
    connect,
    error_type,
    program,
    result,
    running_node,
    write_config,
)
from tests._wait import wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from supervisor.events import Stream


async def _flood(stream: Stream) -> AsyncIterator[LogLines]:
    lines = tuple(f"line {i} ".ljust(100, ".") for i in range(500))
    while True:
        await anyio.lowlevel.checkpoint()
        yield LogLines(process="flood", stream=stream, lines=lines)


class FakeService:
    """Answers every command with an empty result; checks the types it is given."""

    def __init__(self) -> None:
        self.actors: list[Actor] = []
        self.release = anyio.Event()  # a status of "slow" waits for it
        self.waiting = 0

    def _seen(self, actor: Actor, *texts: object) -> None:
        assert isinstance(actor, Actor)
        assert all(isinstance(t, str) and t for t in texts), texts
        self.actors.append(actor)

    async def status(self, actor: Actor, target: str = "all") -> StatusReport:
        self._seen(actor, target)
        if target == "slow":
            self.waiting += 1
            await self.release.wait()
        return StatusReport(node="fake", at=0.0, processes=())

    async def tail(
        self, actor: Actor, target: str, *, lines: int = 20, stream: Stream = "stdout"
    ) -> TailReport:
        self._seen(actor, target)
        assert isinstance(lines, int)
        assert stream in ("stdout", "stderr")
        return TailReport(logs=())

    @contextlib.asynccontextmanager
    async def follow(
        self, actor: Actor, target: str, *, lines: int = 10, stream: Stream = "stdout"
    ) -> AsyncIterator[LogFollow]:
        self._seen(actor, target)
        if target == "flood":  # never ends, and never waits: a worker flooding its log
            yield LogFollow(processes=(target,), lines=_flood(stream))
            return
        send, receive = anyio.create_memory_object_stream[LogLines](1)
        async with send, receive:
            send.send_nowait(LogLines(process=target, stream=stream, lines=("one line",)))
            if target != "quiet":  # a quiet log keeps its follower waiting
                send.close()  # the fake's stream ends at once
            yield LogFollow(processes=(target,), lines=receive)

    async def _act(self, command: Command, actor: Actor, target: str) -> ActionReport:
        self._seen(actor, target)
        return ActionReport(command=command, target=target, processes=())

    async def start(self, actor: Actor, target: str) -> ActionReport:
        return await self._act(Command.START, actor, target)

    async def stop(self, actor: Actor, target: str) -> ActionReport:
        return await self._act(Command.STOP, actor, target)

    async def restart(self, actor: Actor, target: str) -> ActionReport:
        return await self._act(Command.RESTART, actor, target)

    async def signal(self, actor: Actor, target: str, sig: str | int) -> ActionReport:
        parse_signal(sig)
        return await self._act(Command.SIGNAL, actor, target)

    async def reload(self, actor: Actor) -> ReloadResult:
        self._seen(actor)
        return ReloadResult()

    async def shutdown(self, actor: Actor) -> ShutdownReport:
        self._seen(actor)
        return ShutdownReport(node="fake", pid=os.getpid(), wait_seconds=1.0)

    async def asks(self, actor: Actor) -> AsksReport:
        self._seen(actor)
        return AsksReport(questions=())

    async def answer(self, actor: Actor, question_id: int, answer: str) -> AnswerReport:
        self._seen(actor)
        raise UnknownQuestion(question_id)

    async def results(self, actor: Actor, target: str, *, limit: int = 10) -> ResultsReport:
        self._seen(actor, target)
        assert isinstance(limit, int)
        return ResultsReport(results=())

    async def discord_sync(self, actor: Actor) -> DiscordSyncReport:
        self._seen(actor)
        return DiscordSyncReport(guild_id=1, commands=("status",))

    async def task(
        self, actor: Actor, program: str, text: str, *, wait_seconds: float | None = None
    ) -> TaskRecord:
        self._seen(actor, program, text)
        assert wait_seconds is None or wait_seconds > 0
        return _fake_task(program, text)

    async def tasks(self, actor: Actor, *, limit: int = 20) -> TaskList:
        self._seen(actor)
        assert isinstance(limit, int)
        return TaskList(tasks=())

    async def task_cancel(self, actor: Actor, task_id: int) -> TaskRecord:
        self._seen(actor)
        assert isinstance(task_id, int)
        return _fake_task("fake", "cancelled")


def _fake_task(program: str, text: str) -> TaskRecord:
    return TaskRecord(
        id=1,
        program=program,
        text=text,
        source="local",
        author="fake",
        source_key=None,
        max_attempts=3,
        state=TaskState.QUEUED,
        attempts=0,
        created_at=0.0,
        started_at=None,
        ended_at=None,
        owner=None,
        lease_until=None,
        cancel_by=None,
        result="",
        reason="",
        exit_code=None,
        exit_signal=None,
    )


def _private_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return path


@contextlib.asynccontextmanager
async def fake_server(
    directory: Path,
    *,
    idle_timeout: float = 5.0,
    max_clients: int = 8,
    max_followers: int = 8,
    check_interval: float = 2.0,
    service: FakeService | None = None,
) -> AsyncIterator[ControlServer]:
    server = ControlServer(
        service or FakeService(),
        directory / "control.sock",
        idle_timeout=idle_timeout,
        max_clients=max_clients,
        max_followers=max_followers,
        check_interval=check_interval,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        yield server
        await wait_until(lambda: server.clients == 0)
        tg.cancel_scope.cancel()


# -- the socket file -------------------------------------------------------------


async def test_control_socket_is_owner_only_and_removed_on_exit(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, program("tick", "ctl_ticker.py"))
    async with running_node(cfg) as node:
        mode = os.stat(node.socket).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        path = node.socket
    assert not path.exists()


async def test_control_refuses_a_state_dir_writable_by_others(tmp_path: Path) -> None:
    directory = _private_dir(tmp_path)
    directory.chmod(0o777)
    server = ControlServer(FakeService(), directory / "control.sock")
    with pytest.raises(StateDirUnsafe, match="writable by group or others"):
        await server.serve()
    assert not (directory / "control.sock").exists()


async def test_control_replaces_a_stale_socket(tmp_path: Path) -> None:
    directory = _private_dir(tmp_path)
    path = directory / "control.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # bound, never listening: what a killed dsup leaves
    async with fake_server(directory), connect(path) as client:
        assert result(await client.ask("status"))["node"] == "fake"


async def test_control_refuses_a_live_socket(tmp_path: Path) -> None:
    directory = _private_dir(tmp_path)
    async with fake_server(directory) as first:
        second = ControlServer(FakeService(), first.path)
        with pytest.raises(StateDirLocked) as caught:
            await second.serve()
        assert caught.value.holder_pid == os.getpid()
        async with connect(first.path) as client:  # the first one still serves
            assert result(await client.ask("status"))["node"] == "fake"


async def test_control_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    directory = _private_dir(tmp_path)
    (directory / "control.sock").write_text("not a socket")
    server = ControlServer(FakeService(), directory / "control.sock")
    with pytest.raises(StateDirUnsafe, match="not a socket"):
        await server.serve()
    assert (directory / "control.sock").read_text() == "not a socket"


async def test_control_creates_a_deleted_socket_again_and_keeps_its_clients(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``rm control.sock`` left the node unreachable until killed."""
    directory = _private_dir(tmp_path)
    async with (
        fake_server(directory, check_interval=0.05) as server,
        connect(server.path) as old,
    ):
        assert result(await old.ask("status"))["node"] == "fake"
        first = os.stat(server.path).st_ino
        server.path.unlink()
        await wait_until(lambda: server.path.exists())
        assert os.stat(server.path).st_ino != first
        assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600
        async with connect(server.path) as new:
            assert result(await new.ask("status"))["node"] == "fake"
        assert result(await old.ask("status"))["node"] == "fake"  # undisturbed
    assert "was deleted; creating it again" in caplog.text
    assert not server.path.exists()


async def test_control_leaves_a_replacing_file_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = _private_dir(tmp_path)
    async with fake_server(directory, check_interval=0.05) as server:
        server.path.unlink()
        server.path.write_text("someone else's")  # in place before the check runs
        await wait_until(lambda: "replaced by another file" in caplog.text)
        server.path.unlink()  # gone again: ours comes back
        await wait_until(lambda: server.path.exists())
        async with connect(server.path) as client:
            assert result(await client.ask("status"))["node"] == "fake"
    assert caplog.text.count("replaced by another file") == 1


async def test_control_says_when_its_directory_is_no_longer_private(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A ``chmod 777`` after start-up let another user plant a server; dsup said nothing."""
    directory = _private_dir(tmp_path)

    def levels() -> list[int]:
        return [r.levelno for r in caplog.records if r.name == "supervisor.control.server"]

    with caplog.at_level(logging.INFO, logger="supervisor.control.server"):
        async with fake_server(directory, check_interval=0.05):
            caplog.clear()
            directory.chmod(0o777)
            await wait_until(lambda: logging.ERROR in levels())
            directory.chmod(0o700)
            await wait_until(lambda: levels()[-1:] == [logging.INFO])
    assert levels()[:2] == [logging.ERROR, logging.INFO]  # said once, then its end


# -- bad input -----------------------------------------------------------------

BAD_REQUESTS = [
    b"not json",
    b"[1, 2]",
    b'"status"',
    b"{}",
    b'{"cmd": "frobnicate"}',
    b'{"cmd": "status", "args": []}',
    b'{"cmd": "status", "args": {"target": 5}}',
    b'{"cmd": "status", "args": {"colour": "red"}}',
    b'{"cmd": "status", "extra": 1}',
    b'{"cmd": "stop"}',
    b'{"cmd": "stop", "args": {"target": ""}}',
    b'{"cmd": "tail", "args": {"target": "x", "lines": "ten"}}',
    b'{"cmd": "tail", "args": {"target": "x", "lines": true}}',
    b'{"cmd": "tail", "args": {"target": "x", "follow": 1}}',
    b'{"cmd": "tail", "args": {"target": "x", "stream": "stdin"}}',
    b'{"cmd": "signal", "args": {"target": "x", "signal": ["TERM"]}}',
    b'{"id": [1], "cmd": "status"}',
    b"\xff\xfe{}",
    b"[" * 5000 + b"]" * 5000,
]


async def test_control_answers_bad_requests_with_errors_and_keeps_serving(
    tmp_path: Path,
) -> None:
    async with fake_server(_private_dir(tmp_path)) as server, connect(server.path) as client:
        for bad in BAD_REQUESTS:
            await client.send_raw(bad + b"\n")
            assert error_type(await client.receive()) == "ControlProtocolError", bad
        await client.send_raw(
            b'{"id": "x", "cmd": "signal", "args": {"target": "a", "signal": "NOPE"}}\n'
        )
        reply = await client.receive()
        assert error_type(reply) == "InvalidArgument"
        assert reply["id"] == "x"
        assert result(await client.ask("status"))["node"] == "fake"


async def test_control_names_the_bad_value_of_a_string_argument(tmp_path: Path) -> None:
    """A bad stream said "got a string" without the string."""
    async with fake_server(_private_dir(tmp_path)) as server, connect(server.path) as client:
        reply = await client.ask("tail", target="x", stream="stdin")
        assert error_type(reply) == "ControlProtocolError"
        error = reply["error"]
        assert isinstance(error, dict)
        assert error["message"].endswith('stream must be "stdout" or "stderr", got \'stdin\'')
        reply = await client.ask("tail", target="x", stream="x" * 500)
        error = reply["error"]
        assert isinstance(error, dict)
        assert len(error["message"]) < 150  # a long value is cut


async def test_control_ends_a_connection_after_an_oversized_line(tmp_path: Path) -> None:
    async with fake_server(_private_dir(tmp_path)) as server, connect(server.path) as client:
        await client.send_raw(b"x" * (MAX_LINE_BYTES + 10) + b"\n")
        assert error_type(await client.receive()) == "ControlProtocolError"
        # Closed with the rest of the line unread: EOF or a reset, never more data.
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await client.stream.receive()
        async with connect(server.path) as other:  # the server itself is fine
            assert result(await other.ask("status"))["node"] == "fake"


async def test_control_closes_an_idle_connection(tmp_path: Path) -> None:
    async with fake_server(_private_dir(tmp_path), idle_timeout=0.2) as server:
        async with connect(server.path) as client:
            await client.send_raw(b'{"cmd": "sta')  # and never finish the line
            with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
                await client.stream.receive()
        await wait_until(lambda: server.clients == 0)


async def test_control_refuses_clients_over_the_limit(tmp_path: Path) -> None:
    """Only when every connection runs a command is a new one refused."""
    service = FakeService()
    async with (
        fake_server(_private_dir(tmp_path), max_clients=1, service=service) as server,
        connect(server.path) as first,
    ):
        await first.send("status", target="slow")
        await wait_until(lambda: service.waiting > 0)
        async with connect(server.path) as second:
            assert error_type(await second.receive()) == "ControlProtocolError"
        service.release.set()
        assert result(await first.receive())["node"] == "fake"


async def _follow(client: Client, target: str = "quiet") -> None:
    await client.send("tail", target=target, follow=True)
    assert (await client.receive())["streaming"] is True


async def test_control_followers_never_lock_out_commands(tmp_path: Path) -> None:
    """64 ``tail -f`` took every slot: even ``shutdown`` got "too many clients"."""
    async with (
        fake_server(_private_dir(tmp_path), max_clients=2, max_followers=3) as server,
        contextlib.AsyncExitStack() as stack,
    ):
        for _ in range(3):
            await _follow(await stack.enter_async_context(connect(server.path)))
        async with connect(server.path) as one_more:
            await one_more.send("tail", target="quiet", follow=True)
            assert error_type(await one_more.receive()) == "ControlProtocolError"
        for _ in range(5):  # commands still get in, shutdown included
            assert result(await ask(server.path, "status"))["node"] == "fake"
        assert result(await ask(server.path, "shutdown"))["node"] == "fake"


async def test_control_idle_connections_give_way_to_new_commands(tmp_path: Path) -> None:
    """Idle connections (renewed before their timeout) kept every command out."""
    async with (
        fake_server(_private_dir(tmp_path), max_clients=2) as server,
        connect(server.path) as first,
        connect(server.path) as second,
    ):
        assert result(await first.ask("status"))["node"] == "fake"
        assert result(await second.ask("status"))["node"] == "fake"
        # Both idle now: the oldest gives way.
        assert result(await ask(server.path, "shutdown"))["node"] == "fake"
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await first.stream.receive()


async def test_control_counts_only_connections_still_open(tmp_path: Path) -> None:
    """A client that had closed counted until its EOF was read: requests were refused."""
    service = FakeService()
    async with fake_server(_private_dir(tmp_path), max_clients=2, service=service) as server:
        for _ in range(2):
            async with connect(server.path) as gone:  # asks, and leaves at once
                await gone.send("status", target="slow")
                await wait_until(lambda: service.waiting > 0)
            service.waiting = 0
        # Both commands still run for clients that left: neither counts.
        assert result(await ask(server.path, "status"))["node"] == "fake"
        service.release.set()


async def test_control_a_follower_leaving_is_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ctrl-C on ``tail -f`` under load logged an ERROR with a traceback."""
    async with fake_server(_private_dir(tmp_path)) as server:
        for _ in range(10):
            async with connect(server.path) as client:
                await _follow(client, "flood")
                for _ in range(3):
                    await client.receive()
                # Gone with lines unread, as a killed ctl goes: a reset, not a FIN.
                client.stream.extra(anyio.abc.SocketAttribute.raw_socket).setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            await wait_until(lambda: server.clients == 0)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- fuzz ----------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_args = st.dictionaries(
    st.sampled_from(["target", "lines", "stream", "follow", "signal", "other"]), _json, max_size=5
)
_requests = st.fixed_dictionaries(
    {"cmd": st.sampled_from([*(c.value for c in Command), "nope"]), "args": _args},
    optional={"id": _json},
)
_lines = st.lists(
    st.binary(max_size=300).map(lambda b: b.replace(b"\n", b""))
    | _requests.map(lambda r: json.dumps(r).encode()),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lines=_lines)
async def test_control_fuzz_every_line_gets_one_well_formed_answer(
    tmp_path: Path, lines: list[bytes]
) -> None:
    async with fake_server(_private_dir_once(tmp_path)) as server:
        async with connect(server.path) as client:
            for line in lines:
                await client.send_raw(line + b"\n")
                reply = await client.receive()
                assert set(reply) <= {"id", "ok", "result", "error", "streaming"}
                if reply["ok"] is False:
                    assert error_type(reply) != "InternalError", reply
                if reply.get("streaming"):
                    event = await client.receive()
                    assert event["ok"] is True
                    with pytest.raises(anyio.EndOfStream):
                        await client.stream.receive()
                    break
        async with connect(server.path) as client:
            assert result(await client.ask("status"))["node"] == "fake"


def _private_dir_once(tmp_path: Path) -> Path:
    """The fuzz reuses its function-scoped tmp_path across examples."""
    path = tmp_path / "state"
    path.mkdir(mode=0o700, exist_ok=True)
    return path
