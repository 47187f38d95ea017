"""The control socket in front of a real node: the wire form of the command surface.

tests/commands/ checks what each command does through CommandService's typed results;
these check what a client of the socket gets: JSON results, error types, streams.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

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
from tests._wait import wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from tests._control import Node

TICK = program("tick", "ctl_ticker.py", "0.05", numprocs=2)
SOLO = program("solo", "ctl_ticker.py", "0.05", "--stderr")


def _obj(value: object) -> dict[str, object]:
    assert isinstance(value, dict), value
    return value


def _only(value: object) -> dict[str, object]:
    """The one JSON object in the array ``value``."""
    assert isinstance(value, list), value
    (one,) = value
    return _obj(one)


async def _all_running(node: Node) -> None:
    await wait_until(lambda: all(s == "RUNNING" for s in states(node).values()))


async def test_wire_results_are_the_reports_as_json(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, TICK, SOLO)) as node:
        await _all_running(node)
        status = result(await ask(node.socket, "status", target="tick:1"))
        assert status["node"] == "ctltest"
        row = _obj(_only(status["processes"])["status"])
        assert (row["process"], row["state"]) == ("tick:1", "RUNNING")
        assert isinstance(row["pid"], int)
        stopped = result(await ask(node.socket, "stop", target="tick:1"))
        assert (stopped["command"], stopped["target"]) == ("stop", "tick:1")
        one = _only(stopped["processes"])
        assert (one["process"], one["outcome"], one["state"]) == ("tick:1", "ok", "STOPPED")
        tail = result(await ask(node.socket, "tail", target="solo", lines=1, stream="stderr"))
        log = _only(tail["logs"])
        assert (log["process"], log["stream"]) == ("solo:0", "stderr")
        reload = result(await ask(node.socket, "reload"))
        assert reload == {
            "added": [],
            "removed": [],
            "changed": [],
            "updated": [],
            "unchanged": ["tick", "solo"],
        }


async def test_wire_errors_carry_their_type(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, TICK)) as node:
        assert error_type(await ask(node.socket, "restart", target="nosuch*")) == "UnknownProcess"
        bad_signal = await ask(node.socket, "signal", target="tick", signal="NOTASIGNAL")
        assert error_type(bad_signal) == "InvalidArgument"
        assert (
            error_type(await ask(node.socket, "tail", target="tick", lines=-1)) == "InvalidArgument"
        )
        assert error_type(await ask(node.socket, "status", target=5)) == "ControlProtocolError"


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


async def test_a_lone_surrogate_in_a_target_is_a_protocol_error(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, TICK)) as node, connect(node.socket) as client:
        for args in (b'{"target": "\\ud800"}', b'{"target": "x", "signal": "\\udfff"}'):
            cmd = b"signal" if b"signal" in args else b"stop"
            await client.send_raw(b'{"cmd": "' + cmd + b'", "args": ' + args + b"}\n")
            reply = await client.receive()
            assert error_type(reply) == "ControlProtocolError", reply
            assert "lone surrogate" in str(reply["error"])
        assert result(await client.ask("status", target="tick:0"))["node"] == "ctltest"
