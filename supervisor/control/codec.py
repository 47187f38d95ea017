"""The control protocol's codec: JSON lines to checked calls on the command surface, and back.

Every request is checked here, so the server hands the command surface only well-typed calls.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeAlias, TypeGuard

from supervisor.commands.access import Actor, Command
from supervisor.errors import ControlProtocolError, SupervisorError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from contextlib import AbstractAsyncContextManager

    from _typeshed import DataclassInstance

    from supervisor.commands.reports import (
        ActionReport,
        AnswerReport,
        AsksReport,
        DiscordSyncReport,
        LogFollow,
        ResultsReport,
        ShutdownReport,
        StatusReport,
        TailReport,
    )
    from supervisor.events import Stream
    from supervisor.process.fleet import ReloadResult
    from supervisor.tasks.records import TaskList, TaskRecord

RequestId = str | int | None
"""A request's ``id`` as the client sent it."""


class CommandSurface(Protocol):
    """What the server needs from the command service (``CommandService``)."""

    async def status(self, actor: Actor, target: str = "all") -> StatusReport: ...
    async def tail(
        self, actor: Actor, target: str, *, lines: int = 20, stream: Stream = "stdout"
    ) -> TailReport: ...
    def follow(
        self, actor: Actor, target: str, *, lines: int = 10, stream: Stream = "stdout"
    ) -> AbstractAsyncContextManager[LogFollow]: ...
    async def start(self, actor: Actor, target: str) -> ActionReport: ...
    async def stop(self, actor: Actor, target: str) -> ActionReport: ...
    async def restart(self, actor: Actor, target: str) -> ActionReport: ...
    async def signal(self, actor: Actor, target: str, sig: str | int) -> ActionReport: ...
    async def reload(self, actor: Actor) -> ReloadResult: ...
    async def shutdown(self, actor: Actor) -> ShutdownReport: ...
    async def discord_sync(self, actor: Actor) -> DiscordSyncReport: ...
    async def task(
        self, actor: Actor, program: str, text: str, *, wait_seconds: float | None = None
    ) -> TaskRecord: ...
    async def tasks(self, actor: Actor, *, limit: int = 20) -> TaskList: ...
    async def task_cancel(self, actor: Actor, task_id: int) -> TaskRecord: ...
    async def asks(self, actor: Actor) -> AsksReport: ...
    async def answer(self, actor: Actor, question_id: int, answer: str) -> AnswerReport: ...
    async def results(self, actor: Actor, target: str, *, limit: int = 10) -> ResultsReport: ...


Call: TypeAlias = "Callable[[CommandSurface, Actor], Awaitable[object]]"
"""A checked request, ready to run for an actor."""


@dataclass(frozen=True, slots=True)
class FollowRequest:
    """A ``tail`` request with ``follow``: answered by a stream, not one line."""

    target: str
    lines: int
    stream: Stream


# -- requests ------------------------------------------------------------------


def decode_request(line: bytes) -> Mapping[str, object]:
    """The JSON object on one request line.

    Raises:
        ControlProtocolError: not UTF-8 JSON, or not an object.
    """
    try:
        request = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ControlProtocolError(f"not a JSON line: {exc}") from None
    if not isinstance(request, dict):
        raise ControlProtocolError(f"a request is a JSON object, got {_kind(request)}")
    return request


def request_id_of(request: Mapping[str, object]) -> RequestId:
    """The request's ``id``, echoed in its answer.

    Raises:
        ControlProtocolError: the id is not a string, an integer or null.
    """
    value = request.get("id")
    if value is None or (isinstance(value, str | int) and not isinstance(value, bool)):
        return value
    raise ControlProtocolError(f"id must be a string, an integer or null, got {_kind(value)}")


def bind_request(
    request: Mapping[str, object],
) -> Call | FollowRequest:
    """Check a request's command and arguments; return what to run.

    Raises:
        ControlProtocolError: unknown keys, command or arguments, or a wrong type.
    """
    extra = set(request) - {"id", "cmd", "args"}
    if extra:
        raise ControlProtocolError(f"unknown request keys {sorted(extra)!r}")
    cmd = request.get("cmd")
    known = [c.value for c in Command]
    if not isinstance(cmd, str) or cmd not in known:
        raise ControlProtocolError(f"unknown command {cmd!r}; known: {', '.join(known)}")
    raw = request.get("args", {})
    if not isinstance(raw, dict):
        raise ControlProtocolError(f"args must be a JSON object, got {_kind(raw)}")
    args = _Args(cmd, raw)
    bound = _BINDERS[Command(cmd)](args)
    args.finish()
    return bound


class _Args:
    """Typed access to a request's arguments; unknown names are refused."""

    def __init__(self, cmd: str, raw: Mapping[str, object]) -> None:
        self._cmd = cmd
        self._raw = raw
        self._used: set[str] = set()

    def _get(self, name: str, default: object) -> object:
        self._used.add(name)
        if name in self._raw:
            return self._raw[name]
        if default is _REQUIRED:
            raise ControlProtocolError(f"{self._cmd}: missing argument {name!r}")
        return default

    def _bad(self, name: str, want: str, value: object) -> ControlProtocolError:
        return ControlProtocolError(f"{self._cmd}: {name} must be {want}, got {_kind(value)}")

    def text(self, name: str, default: object = None) -> str:
        value = self._get(name, _REQUIRED if default is None else default)
        if not isinstance(value, str) or not value:
            raise self._bad(name, "a non-empty string", value)
        return self._unicode(name, value)

    def integer(self, name: str, default: int | None = None) -> int:
        value = self._get(name, _REQUIRED if default is None else default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._bad(name, "an integer", value)
        return value

    def seconds(self, name: str) -> float | None:
        value = self._get(name, None)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise self._bad(name, "a number of seconds > 0", value)
        return float(value)

    def flag(self, name: str, default: bool) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self._bad(name, "true or false", value)
        return value

    def signal(self, name: str) -> str | int:
        value = self._get(name, _REQUIRED)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self._bad(name, "a signal name or number", value)
        return self._unicode(name, value) if isinstance(value, str) else value

    def _unicode(self, name: str, value: str) -> str:
        """``value`` unless it holds a lone surrogate (valid JSON, not valid text)."""
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ControlProtocolError(
                f"{self._cmd}: {name} must be valid Unicode text, got a lone surrogate"
            ) from None
        return value

    def stream(self, name: str) -> Stream:
        value = self._get(name, "stdout")
        if value == "stdout" or value == "stderr":
            return value
        if isinstance(value, str) and value:  # the wrong word: show it
            shown = value if len(value) <= 40 else f"{value[:40]}..."
            raise ControlProtocolError(
                f'{self._cmd}: {name} must be "stdout" or "stderr", got {shown!r}'
            )
        raise self._bad(name, '"stdout" or "stderr"', value)

    def finish(self) -> None:
        extra = set(self._raw) - self._used
        if extra:
            raise ControlProtocolError(f"{self._cmd}: unknown arguments {sorted(extra)!r}")


_REQUIRED = object()


def _bind_tail(a: _Args) -> Call | FollowRequest:
    target, lines, stream = a.text("target"), a.integer("lines", 20), a.stream("stream")
    if a.flag("follow", False):
        return FollowRequest(target, lines, stream)
    return lambda s, actor: s.tail(actor, target, lines=lines, stream=stream)


def _bind_target(
    method: Callable[[CommandSurface, Actor, str], Awaitable[object]],
) -> Callable[[_Args], Call]:
    def bind(a: _Args) -> Call:
        target = a.text("target")
        return lambda s, actor: method(s, actor, target)

    return bind


def _bind_signal(a: _Args) -> Call:
    target, sig = a.text("target"), a.signal("signal")
    return lambda s, actor: s.signal(actor, target, sig)


def _bind_answer(a: _Args) -> Call:
    question_id, answer = a.integer("question", None), a.text("answer")
    return lambda s, actor: s.answer(actor, question_id, answer)


def _bind_results(a: _Args) -> Call:
    target, limit = a.text("target"), a.integer("count", 10)
    return lambda s, actor: s.results(actor, target, limit=limit)


def _bind_status(a: _Args) -> Call:
    target = a.text("target", "all")
    return lambda s, actor: s.status(actor, target)


def _bind_task(a: _Args) -> Call:
    program, text, wait = a.text("program"), a.text("text"), a.seconds("wait_seconds")
    return lambda s, actor: s.task(actor, program, text, wait_seconds=wait)


def _bind_tasks(a: _Args) -> Call:
    limit = a.integer("limit", 20)
    return lambda s, actor: s.tasks(actor, limit=limit)


def _bind_task_cancel(a: _Args) -> Call:
    task_id = a.integer("id")
    return lambda s, actor: s.task_cancel(actor, task_id)


_BINDERS: dict[Command, Callable[[_Args], Call | FollowRequest]] = {
    Command.STATUS: _bind_status,
    Command.TAIL: _bind_tail,
    Command.START: _bind_target(lambda s, actor, t: s.start(actor, t)),
    Command.STOP: _bind_target(lambda s, actor, t: s.stop(actor, t)),
    Command.RESTART: _bind_target(lambda s, actor, t: s.restart(actor, t)),
    Command.SIGNAL: _bind_signal,
    Command.RELOAD: lambda a: lambda s, actor: s.reload(actor),
    Command.SHUTDOWN: lambda a: lambda s, actor: s.shutdown(actor),
    Command.DISCORD_SYNC: lambda a: lambda s, actor: s.discord_sync(actor),
    Command.TASK: _bind_task,
    Command.TASKS: _bind_tasks,
    Command.TASK_CANCEL: _bind_task_cancel,
    Command.ASKS: lambda a: lambda s, actor: s.asks(actor),
    Command.ANSWER: _bind_answer,
    Command.RESULTS: _bind_results,
}


# -- responses -----------------------------------------------------------------


def to_wire(value: object) -> object:
    """Turn a result (frozen dataclasses, enums, tuples) into JSON-ready values."""
    if _is_record(value):
        return {name: to_wire(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, enum.Enum):
        return to_wire(value.value)
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def error_response(request_id: RequestId, exc: BaseException) -> dict[str, object]:
    """The answer to a failed request; errors not ours are an ``InternalError``."""
    kind = type(exc).__name__ if isinstance(exc, SupervisorError) else "InternalError"
    return {"id": request_id, "ok": False, "error": {"type": kind, "message": str(exc)}}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if value == "":
        return "an empty string"
    if isinstance(value, bool):
        return "a boolean"
    names: dict[type, str] = {dict: "an object", list: "an array", str: "a string"}
    return names.get(type(value), f"a {type(value).__name__}")


def encode_message(message: Mapping[str, object]) -> bytes:
    """One response line: compact ASCII JSON and its newline; results go through :func:`to_wire`.

    A sequence is encoded one element at a time. One ``json.dumps`` of a whole
    status of 500 processes held every piece of its text at once (about 2 MiB
    for 200 KiB of text), and left a node at rest that much of its heap in
    holes between the processes' long-lived objects.
    """
    return (_json_text(message) + "\n").encode("ascii")


def _json_text(value: object) -> str:
    """The compact JSON text of ``to_wire(value)``, built member by member."""
    if isinstance(value, list | tuple):
        text = io.StringIO()  # the text of one element at a time: not 500 rows at once
        text.write("[")
        for i, item in enumerate(value):
            if i:
                text.write(",")
            text.write(_json_text(item))
        text.write("]")
        return text.getvalue()
    if isinstance(value, dict):
        members = [(str(k), v) for k, v in value.items()]
    elif _is_record(value):
        members = [(name, getattr(value, name)) for name in _field_names(type(value))]
    else:
        return _ENCODER.encode(to_wire(value))
    if not any(isinstance(v, list | tuple) or _is_object(v) for _, v in members):
        return _ENCODER.encode({k: to_wire(v) for k, v in members})  # a leaf: in one go
    return "{" + ",".join([f"{_ENCODER.encode(k)}:{_json_text(v)}" for k, v in members]) + "}"


@functools.cache
def _field_names(cls: type[DataclassInstance]) -> tuple[str, ...]:
    """The fields of a result class, once: ``dataclasses.fields`` makes a tuple per call,
    which CPython keeps in a free list once freed (up to 2,000 of each size)."""
    return tuple(f.name for f in dataclasses.fields(cls))


def _is_object(value: object) -> bool:
    """Whether ``value`` goes on the wire as a JSON object: a dataclass instance or a dict."""
    return isinstance(value, dict) or _is_record(value)


def _is_record(value: object) -> TypeGuard[DataclassInstance]:
    """Whether ``value`` is a dataclass instance (not a dataclass itself)."""
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))
