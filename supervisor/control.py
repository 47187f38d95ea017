"""The local control socket behind ``dsup ctl``: a unix socket speaking JSON lines.

This module owns the socket file (``state_dir/control.sock``, mode 0600; a stale
one from a killed dsup is replaced, a live one is refused), the wire protocol and
each client connection. It does not own what a command does, who may run it or
the audit trail: every request goes to the :class:`~supervisor.commands.CommandService`.

Protocol: the client sends one JSON object per line, ``{"id": 1, "cmd":
"status", "args": {}}``, and gets one line back, ``{"id": 1, "ok": true,
"result": ...}`` or ``{"id": 1, "ok": false, "error": {"type": "UnknownWorker",
"message": "..."}}``. Several requests may follow each other on one connection.
``tail`` with ``"follow": true`` answers ``{"id": 1, "ok": true, "streaming":
true, "result": [processes followed]}``, then one ``{"id": 1, "ok": true,
"event": {...}}`` per batch of lines until the client disconnects; it must be
the last request of its connection (anything sent after it ends the stream).

Bad input never crashes the server: malformed JSON, unknown commands or
arguments, wrong types and lines over :data:`MAX_LINE_BYTES` get an error
response (an oversized line also ends its connection). Every request read has
a deadline (``idle_timeout``) and so has every write (``send_timeout``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import json
import logging
import os
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeAlias

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream
from anyio.streams.buffered import BufferedByteReceiveStream

from supervisor.commands import Actor, Command
from supervisor.errors import (
    AccessDenied,
    ControlProtocolError,
    StateDirLocked,
    StateDirUnsafe,
    SupervisorError,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Mapping
    from contextlib import AbstractAsyncContextManager

    from anyio.abc import TaskStatus

    from supervisor.commands import (
        ActionReport,
        LogFollow,
        ShutdownReport,
        StatusReport,
        TailReport,
    )
    from supervisor.events import Stream
    from supervisor.fleet import ReloadResult

logger = logging.getLogger(__name__)

SOCKET_MODE = 0o600
MAX_LINE_BYTES = 64 * 1024
"""The longest request line accepted; longer ones get an error and the connection ends."""

RequestId = str | int | None


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


_Call: TypeAlias = "Callable[[CommandSurface, Actor], Awaitable[object]]"


@dataclass(frozen=True, slots=True)
class _Follow:
    """A ``tail`` request with ``follow``: answered by a stream, not one line."""

    target: str
    lines: int
    stream: Stream


class ControlServer:
    """Serves the control socket of one node.

    Use ``await task_group.start(server.serve)``; cancelling ``serve`` closes
    every connection and removes the socket file.
    """

    def __init__(
        self,
        service: CommandSurface,
        path: Path,
        *,
        idle_timeout: float = 30.0,
        send_timeout: float = 10.0,
        max_clients: int = 64,
    ) -> None:
        """Prepare a server; nothing is created until ``serve``.

        Args:
            service: where commands go.
            path: the socket path, normally ``state_dir/control.sock``.
            idle_timeout: how long a client may take to send its next request line.
            send_timeout: how long a client may take to take one response line.
            max_clients: connections served at once; more get an error.
        """
        self._service = service
        self.path = Path(path)
        self._idle_timeout = idle_timeout
        self._send_timeout = send_timeout
        self._max_clients = max_clients
        self._clients = 0

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Create the socket, signal readiness, and serve clients until cancelled.

        Raises:
            StateDirUnsafe: the socket's directory is not private to this user,
                or a non-socket file is in the way.
            StateDirLocked: a live dsup already answers on this socket.
        """
        _check_private_dir(self.path.parent)
        await _clear_stale_socket(self.path)
        with _listen(self.path) as listener:
            inode = os.stat(self.path).st_ino
            logger.info("control socket listening on %s", self.path)
            try:
                async with anyio.create_task_group() as tg:
                    task_status.started()
                    while True:
                        conn = await _accept(listener)
                        if conn is not None:
                            tg.start_soon(self._handle, _Connection(conn))
            finally:
                _remove_if_ours(self.path, inode)

    @property
    def clients(self) -> int:
        """Connections being served right now."""
        return self._clients

    async def _handle(self, stream: _Connection) -> None:
        """Serve one connection; the task boundary: nothing escapes but cancellation."""
        self._clients += 1
        try:
            async with stream:
                await self._converse(stream)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, TimeoutError) as exc:
            logger.debug("control client went away: %r", exc)
        except OSError as exc:
            logger.debug("control connection error: %s", exc)
        except Exception:
            logger.exception("control connection failed")
        finally:
            self._clients -= 1

    async def _converse(self, stream: _Connection) -> None:
        if self._clients > self._max_clients:
            await self._send(stream, _error(None, ControlProtocolError("too many clients")))
            return
        try:
            actor = _peer_actor(stream)
        except AccessDenied as exc:
            await self._send(stream, _error(None, exc))
            return
        reader = BufferedByteReceiveStream(stream)
        while True:
            try:
                with anyio.fail_after(self._idle_timeout):
                    line = await reader.receive_until(b"\n", MAX_LINE_BYTES)
            except (anyio.IncompleteRead, anyio.EndOfStream, TimeoutError):
                return  # the client is done, or idle too long
            except anyio.DelimiterNotFound:
                reason = f"request line longer than {MAX_LINE_BYTES} bytes"
                await self._send(stream, _error(None, ControlProtocolError(reason)))
                return
            request_id: RequestId = None
            try:
                request = _decode(line)
                request_id = _request_id(request)
                call = _bind(request)
            except (ControlProtocolError, SupervisorError) as exc:
                await self._send(stream, _error(request_id, exc))
                continue
            if isinstance(call, _Follow):
                await self._follow(stream, reader, actor, request_id, call)
                return
            # A command that ran gets its answer even if the server is stopping
            # meanwhile (``shutdown`` itself stops it): shielded, bounded.
            await self._send(stream, await self._run(call, actor, request_id), shield=True)

    async def _run(
        self,
        call: _Call,
        actor: Actor,
        request_id: RequestId,
    ) -> dict[str, object]:
        try:
            result = await call(self._service, actor)
        except SupervisorError as exc:
            return _error(request_id, exc)
        except Exception as exc:
            logger.exception("control command failed unexpectedly")
            return _error(request_id, exc)
        return {"id": request_id, "ok": True, "result": to_wire(result)}

    async def _follow(
        self,
        stream: _Connection,
        reader: BufferedByteReceiveStream,
        actor: Actor,
        request_id: RequestId,
        request: _Follow,
    ) -> None:
        """Stream log lines until the client disconnects (or sends anything)."""
        follow = self._service.follow(
            actor, request.target, lines=request.lines, stream=request.stream
        )
        async with contextlib.AsyncExitStack() as stack:
            try:
                following = await stack.enter_async_context(follow)
            except SupervisorError as exc:
                await self._send(stream, _error(request_id, exc))
                return
            ack = {"id": request_id, "ok": True, "streaming": True, "result": following.processes}
            await self._send(stream, ack)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_end_on_input, reader, tg.cancel_scope)
                async for chunk in following.lines:
                    await self._send(
                        stream, {"id": request_id, "ok": True, "event": to_wire(chunk)}
                    )
                tg.cancel_scope.cancel("follow ended")

    async def _send(
        self, stream: _Connection, message: Mapping[str, object], *, shield: bool = False
    ) -> None:
        data = json.dumps(message, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
        with anyio.fail_after(self._send_timeout, shield=shield):
            await stream.send(data.encode("ascii") + b"\n")


async def _end_on_input(reader: BufferedByteReceiveStream, scope: anyio.CancelScope) -> None:
    """End a stream when the client disconnects or sends anything.

    No deadline on purpose: a follower may watch a quiet log for hours, and a
    unix socket always reports its peer's end.
    """
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        await reader.receive()
    scope.cancel("client left the stream")


# -- requests ------------------------------------------------------------------


def _decode(line: bytes) -> Mapping[str, object]:
    try:
        request = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ControlProtocolError(f"not a JSON line: {exc}") from None
    if not isinstance(request, dict):
        raise ControlProtocolError(f"a request is a JSON object, got {_kind(request)}")
    return request


def _request_id(request: Mapping[str, object]) -> RequestId:
    value = request.get("id")
    if value is None or (isinstance(value, str | int) and not isinstance(value, bool)):
        return value
    raise ControlProtocolError(f"id must be a string, an integer or null, got {_kind(value)}")


def _bind(
    request: Mapping[str, object],
) -> _Call | _Follow:
    """Check a request's command and arguments; return what to run."""
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
        return value

    def integer(self, name: str, default: int) -> int:
        value = self._get(name, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._bad(name, "an integer", value)
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self._bad(name, "true or false", value)
        return value

    def signal(self, name: str) -> str | int:
        value = self._get(name, _REQUIRED)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self._bad(name, "a signal name or number", value)
        return value

    def stream(self, name: str) -> Stream:
        value = self._get(name, "stdout")
        if value == "stdout" or value == "stderr":
            return value
        raise self._bad(name, '"stdout" or "stderr"', value)

    def finish(self) -> None:
        extra = set(self._raw) - self._used
        if extra:
            raise ControlProtocolError(f"{self._cmd}: unknown arguments {sorted(extra)!r}")


_REQUIRED = object()


def _bind_tail(a: _Args) -> _Call | _Follow:
    target, lines, stream = a.text("target"), a.integer("lines", 20), a.stream("stream")
    if a.flag("follow", False):
        return _Follow(target, lines, stream)
    return lambda s, actor: s.tail(actor, target, lines=lines, stream=stream)


def _bind_target(
    method: Callable[[CommandSurface, Actor, str], Awaitable[object]],
) -> Callable[[_Args], _Call]:
    def bind(a: _Args) -> _Call:
        target = a.text("target")
        return lambda s, actor: method(s, actor, target)

    return bind


def _bind_signal(a: _Args) -> _Call:
    target, sig = a.text("target"), a.signal("signal")
    return lambda s, actor: s.signal(actor, target, sig)


def _bind_status(a: _Args) -> _Call:
    target = a.text("target", "all")
    return lambda s, actor: s.status(actor, target)


_BINDERS: dict[Command, Callable[[_Args], _Call | _Follow]] = {
    Command.STATUS: _bind_status,
    Command.TAIL: _bind_tail,
    Command.START: _bind_target(lambda s, actor, t: s.start(actor, t)),
    Command.STOP: _bind_target(lambda s, actor, t: s.stop(actor, t)),
    Command.RESTART: _bind_target(lambda s, actor, t: s.restart(actor, t)),
    Command.SIGNAL: _bind_signal,
    Command.RELOAD: lambda a: lambda s, actor: s.reload(actor),
    Command.SHUTDOWN: lambda a: lambda s, actor: s.shutdown(actor),
}


# -- responses -----------------------------------------------------------------


def to_wire(value: object) -> object:
    """Turn a result (frozen dataclasses, enums, tuples) into JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return to_wire(value.value)
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _error(request_id: RequestId, exc: BaseException) -> dict[str, object]:
    kind = type(exc).__name__ if isinstance(exc, SupervisorError) else "InternalError"
    return {"id": request_id, "ok": False, "error": {"type": kind, "message": str(exc)}}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    names: dict[type, str] = {dict: "an object", list: "an array", str: "a string"}
    return names.get(type(value), f"a {type(value).__name__}")


# -- the socket file -----------------------------------------------------------


def _peer_actor(stream: _Connection) -> Actor:
    """The local user at the other end (SO_PEERCRED); only us or root may talk."""
    if not hasattr(socket, "SO_PEERCRED"):  # not Linux: the 0600 socket is the guard
        return Actor.local()
    creds = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    actor = Actor.local(uid)
    if uid not in (os.getuid(), 0):
        raise AccessDenied(actor.name, "use this control socket", "owner", "none")
    logger.debug("control client pid %d uid %d (%s)", pid, uid, actor.name)
    return actor


def _check_private_dir(path: Path) -> None:
    st = path.stat()
    if st.st_uid != os.getuid():
        raise StateDirUnsafe(
            path, f"belongs to uid {st.st_uid}, not to this user", "give dsup its own state_dir"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StateDirUnsafe(
            path,
            f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})",
            f"run: chmod 700 {str(path)!r}",
        )


async def _clear_stale_socket(path: Path) -> None:
    """Remove a socket left by a dead dsup; refuse one a live dsup answers on."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise StateDirUnsafe(path.parent, f"holds {path.name}, not a socket", f"remove {path}")
    holder = await anyio.to_thread.run_sync(_probe, path)
    if holder is not None:
        raise StateDirLocked(path.parent, holder or None)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    logger.warning("removed a stale control socket %s (its dsup is gone)", path)


def _probe(path: Path) -> int | None:
    """Connect to ``path``: the pid of the live server (0 if unknown), None if stale."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        try:
            sock.connect(os.fspath(path))
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                return None
            raise
        if not hasattr(socket, "SO_PEERCRED"):
            return 0
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid: int = struct.unpack("3i", creds)[0]
        return pid


def _remove_if_ours(path: Path, inode: int) -> None:
    """Unlink the socket file unless another server has replaced it."""
    with contextlib.suppress(FileNotFoundError):
        if path.lstat().st_ino == inode:
            path.unlink()


@contextlib.contextmanager
def _listen(path: Path) -> Iterator[socket.socket]:
    """A listening unix socket at ``path`` with mode 0600 (its directory is private)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.bind(os.fspath(path))
        os.chmod(path, SOCKET_MODE)
        sock.listen(128)
        yield sock
    finally:
        sock.close()


async def _accept(listener: socket.socket) -> socket.socket | None:
    """The next connection, or None after a transient failure (logged, paced)."""
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        await anyio.wait_readable(listener)
        return None
    except (ConnectionAbortedError, InterruptedError):
        return None
    except OSError as exc:  # EMFILE and friends: keep serving once fds free up
        logger.error("control socket cannot accept: %s", exc)
        await anyio.sleep(0.1)
        return None
    return conn


class _Connection(ByteStream):
    """One client connection: a non-blocking socket and anyio's fd waits.

    Not anyio's ``UNIXSocketStream``: on asyncio, cancelling its ``receive``
    just as the peer closes makes the loop log ``InvalidStateError`` from a
    callback (seen when a client leaves as the server stops). ``wait_readable``
    and ``wait_writable`` tolerate that race.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.socket = sock

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.lowlevel.checkpoint()
        while True:
            try:
                data = self.socket.recv(max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self.socket)
                continue
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            if not data:
                raise anyio.EndOfStream
            return data

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint()
        view = memoryview(item)
        while view:
            try:
                sent = self.socket.send(view)
            except BlockingIOError:
                await anyio.wait_writable(self.socket)
                continue
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            view = view[sent:]

    async def send_eof(self) -> None:
        self.socket.shutdown(socket.SHUT_WR)

    async def aclose(self) -> None:
        self.socket.close()
        await anyio.lowlevel.checkpoint()
