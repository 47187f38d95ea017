"""Tests of the control protocol's codec alone: request lines to calls, results to lines.

The socket tests (test_server.py) check the wire end to end; these pin what each request
becomes on the command surface and how every kind of bad request is refused.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

from supervisor.commands.access import AccessLevel, Actor, Command
from supervisor.control.codec import (
    FollowRequest,
    bind_request,
    decode_request,
    encode_message,
    error_response,
    request_id_of,
    to_wire,
)
from supervisor.errors import ControlProtocolError, UnknownProcess

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from supervisor.control.codec import CommandSurface

ACTOR = Actor(name="alice", source="local", level=AccessLevel.ADMIN)
Recorded = tuple[str, tuple[object, ...], dict[str, object]]


class _Recorder:
    """Stands in for the command surface: each call returns what it was called with."""

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Recorded]]:
        async def call(actor: Actor, *args: object, **kwargs: object) -> Recorded:
            assert actor is ACTOR
            return method, args, kwargs

        return call


async def _bound(request: dict[str, object]) -> Recorded | FollowRequest:
    """What ``request`` calls on the command surface (or the follow it asks for)."""
    bound = bind_request(request)
    if isinstance(bound, FollowRequest):
        return bound
    return cast("Recorded", await bound(cast("CommandSurface", _Recorder()), ACTOR))


CALLS: list[tuple[dict[str, object], Recorded | FollowRequest]] = [
    ({"cmd": "status"}, ("status", ("all",), {})),
    ({"cmd": "status", "args": {"target": "web"}}, ("status", ("web",), {})),
    (
        {"cmd": "tail", "args": {"target": "web"}},
        ("tail", ("web",), {"lines": 20, "stream": "stdout"}),
    ),
    (
        {"cmd": "tail", "args": {"target": "web", "lines": 5, "stream": "stderr"}},
        ("tail", ("web",), {"lines": 5, "stream": "stderr"}),
    ),
    (
        {"cmd": "tail", "args": {"target": "web", "follow": True}},
        FollowRequest("web", 20, "stdout"),
    ),
    ({"cmd": "start", "args": {"target": "web:0"}}, ("start", ("web:0",), {})),
    ({"cmd": "stop", "args": {"target": "all"}}, ("stop", ("all",), {})),
    ({"cmd": "restart", "args": {"target": "w*"}}, ("restart", ("w*",), {})),
    ({"cmd": "signal", "args": {"target": "web", "signal": "HUP"}}, ("signal", ("web", "HUP"), {})),
    ({"cmd": "signal", "args": {"target": "web", "signal": 10}}, ("signal", ("web", 10), {})),
    ({"cmd": "reload"}, ("reload", (), {})),
    ({"id": 7, "cmd": "shutdown", "args": {}}, ("shutdown", (), {})),
    ({"cmd": "discord-sync"}, ("discord_sync", (), {})),
    (
        {"cmd": "task", "args": {"program": "p", "text": "do it", "wait_seconds": 2}},
        ("task", ("p", "do it"), {"wait_seconds": 2.0}),
    ),
    (
        {"cmd": "task", "args": {"program": "p", "text": "x"}},
        ("task", ("p", "x"), {"wait_seconds": None}),
    ),
    ({"cmd": "tasks"}, ("tasks", (), {"limit": 20})),
    ({"cmd": "task-cancel", "args": {"id": 3}}, ("task_cancel", (3,), {})),
    ({"cmd": "asks"}, ("asks", (), {})),
    ({"cmd": "answer", "args": {"question": 4, "answer": "yes"}}, ("answer", (4, "yes"), {})),
    ({"cmd": "results", "args": {"target": "web"}}, ("results", ("web",), {"limit": 10})),
]


@pytest.mark.parametrize(("request_", "call"), CALLS)
async def test_codec_binds_each_request_to_its_call(
    request_: dict[str, object], call: Recorded | FollowRequest
) -> None:
    assert await _bound(request_) == call


def test_codec_calls_cover_every_command() -> None:
    assert {str(r["cmd"]) for r, _ in CALLS} == {c.value for c in Command}


@pytest.mark.parametrize(
    ("request_", "says"),
    [
        ({"cmd": "status", "extra": 1}, "unknown request keys ['extra']"),
        ({"cmd": "nope"}, "unknown command 'nope'; known: status, tail"),
        ({"args": {}}, "unknown command None"),
        ({"cmd": "status", "args": []}, "args must be a JSON object, got an array"),
        ({"cmd": "start"}, "start: missing argument 'target'"),
        (
            {"cmd": "start", "args": {"target": ""}},
            "start: target must be a non-empty string, got an empty string",
        ),
        (
            {"cmd": "stop", "args": {"target": 5}},
            "stop: target must be a non-empty string",
        ),
        (
            {"cmd": "tail", "args": {"target": "w", "lines": True}},
            "tail: lines must be an integer, got a boolean",
        ),
        (
            {"cmd": "tail", "args": {"target": "w", "follow": "yes"}},
            "tail: follow must be true or false",
        ),
        (
            {"cmd": "tail", "args": {"target": "w", "stream": "stdxx"}},
            'stream must be "stdout" or "stderr", got \'stdxx\'',
        ),
        (
            {"cmd": "status", "args": {"target": "w", "lines": 3}},
            "status: unknown arguments ['lines']",
        ),
        (
            {"cmd": "signal", "args": {"target": "w", "signal": False}},
            "signal must be a signal name or number",
        ),
        (
            {"cmd": "start", "args": {"target": "\ud800"}},
            "target must be valid Unicode text, got a lone surrogate",
        ),
        (
            {"cmd": "task", "args": {"program": "p", "text": "x", "wait_seconds": 0}},
            "a number of seconds > 0",
        ),
        ({"cmd": "answer", "args": {"answer": "yes"}}, "answer: missing argument 'question'"),
    ],
)
def test_codec_refuses_a_bad_request_saying_what_is_wrong(
    request_: dict[str, object], says: str
) -> None:
    with pytest.raises(ControlProtocolError) as refused:
        bind_request(request_)
    assert says in str(refused.value)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b"\xff\n", "not a JSON line"),
        (b"{nope}\n", "not a JSON line"),
        (b"[1, 2]\n", "a request is a JSON object, got an array"),
        (b"[" * 100_000 + b"]" * 100_000, "not a JSON line"),
    ],
)
def test_codec_refuses_a_line_that_is_no_json_object(line: bytes, says: str) -> None:
    with pytest.raises(ControlProtocolError) as refused:
        decode_request(line)
    assert says in str(refused.value)


def test_codec_decodes_a_request_line() -> None:
    assert decode_request(b'{"id": 1, "cmd": "status"}\n') == {"id": 1, "cmd": "status"}


@pytest.mark.parametrize("request_id", ["a", 7, None])
def test_codec_echoes_a_string_integer_or_null_id(request_id: str | int | None) -> None:
    assert request_id_of({"id": request_id}) == request_id


@pytest.mark.parametrize("request_id", [True, 1.5, [1], {"a": 1}])
def test_codec_refuses_any_other_id(request_id: object) -> None:
    with pytest.raises(ControlProtocolError, match="id must be a string, an integer or null"):
        request_id_of({"id": request_id})


class _Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class _Inner:
    colour: _Colour
    where: Path


@dataclasses.dataclass(frozen=True)
class _Outer:
    items: tuple[_Inner, ...]
    counts: dict[int, int]


def test_codec_to_wire_turns_results_into_json_values() -> None:
    value = _Outer(items=(_Inner(colour=_Colour.RED, where=Path("/tmp/x")),), counts={1: 2})
    wire = to_wire(value)
    assert wire == {"items": [{"colour": "red", "where": "/tmp/x"}], "counts": {"1": 2}}
    assert json.loads(json.dumps(wire)) == wire


def test_codec_error_response_names_our_errors_and_hides_others() -> None:
    ours = error_response(3, UnknownProcess("nope"))
    assert ours["ok"] is False
    assert ours["error"] == {"type": "UnknownProcess", "message": str(UnknownProcess("nope"))}
    theirs = error_response(None, RuntimeError("boom"))
    assert theirs == {
        "id": None,
        "ok": False,
        "error": {"type": "InternalError", "message": "boom"},
    }


def test_codec_encode_message_is_one_compact_ascii_line() -> None:
    line = encode_message({"id": 1, "ok": True, "result": "café"})
    assert line == b'{"id":1,"ok":true,"result":"caf\\u00e9"}\n'
    with pytest.raises(ValueError, match="JSON compliant"):
        encode_message({"x": float("nan")})


def test_codec_encode_message_puts_results_on_the_wire_itself() -> None:
    """The server hands a result over as it is; each row is encoded on its own."""
    rows = tuple(_Inner(colour=_Colour.RED, where=Path(f"/tmp/{i}")) for i in range(3))
    value = _Outer(items=rows, counts={1: 2})
    message = {"id": 7, "ok": True, "result": value}
    line = encode_message(message)
    one_shot = json.dumps({**message, "result": to_wire(value)}, separators=(",", ":"))
    assert line == one_shot.encode("ascii") + b"\n"
    assert json.loads(line)["result"]["items"][2] == {"colour": "red", "where": "/tmp/2"}


def test_codec_encoding_a_long_result_leaves_no_block_behind() -> None:
    """``dataclasses.fields`` made a tuple per row, which CPython kept in a free list once
    freed: 1,000 blocks (168 KB) held after each status of 500 processes."""
    rows = tuple(_Inner(colour=_Colour.RED, where=Path(f"/tmp/{i}")) for i in range(300))
    message = {"id": 1, "ok": True, "result": _Outer(items=rows, counts={})}
    encode_message(message)  # caches and free lists warm
    before = sys.getallocatedblocks()
    encode_message(message)
    assert sys.getallocatedblocks() - before < 50
