"""The control socket behind ``dsup ctl``: a unix socket speaking JSON lines (docs/control.md).

Every read and write has a deadline and bad input gets an error answer, never a crash; every
request goes to the :class:`~supervisor.commands.service.CommandService`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import select
import socket
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream
from anyio.streams.buffered import BufferedByteReceiveStream

from supervisor.commands.access import Actor
from supervisor.control import socketfile
from supervisor.control.codec import (
    CommandSurface,
    FollowRequest,
    bind_request,
    decode_request,
    encode_message,
    error_response,
    request_id_of,
)
from supervisor.errors import AccessDenied, ControlProtocolError, SupervisorError
from supervisor.state import statedir

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from anyio.abc import TaskGroup, TaskStatus

    from supervisor.control.codec import Call, RequestId

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_LINE_BYTES = 64 * 1024
"""The longest request line accepted; longer ones get an error and the connection ends."""


class ControlServer:
    """Serves the control socket of one node.

    Use ``await task_group.start(server.serve)``; cancelling ``serve`` marks
    the shutdown in the socket's directory (``statedir.mark_shutting_down``),
    then closes every connection and removes the socket file.
    """

    def __init__(
        self,
        service: CommandSurface,
        path: Path,
        *,
        idle_timeout: float = 30.0,
        send_timeout: float = 10.0,
        max_clients: int = 64,
        max_followers: int = 64,
        check_interval: float = 2.0,
    ) -> None:
        """Prepare a server; nothing is created until ``serve``.

        Args:
            service: where commands go.
            path: the socket path, normally ``state_dir/control.sock``.
            idle_timeout: how long a client may take to send its next request line.
            send_timeout: how long a client may take to take one response line.
            max_clients: command connections served at once. At the limit, a
                new one makes the connection idle the longest give way; only
                when every one is running a command does it get an error.
                Connections whose client has left do not count.
            max_followers: ``tail -f`` streams served at once, apart from
                the command connections: a follow over it gets an error.
            check_interval: how often the socket file is checked, and
                created again if it was deleted (seconds).
        """
        self._service = service
        self.path = Path(path)
        self._idle_timeout = idle_timeout
        self._send_timeout = send_timeout
        self._max_clients = max_clients
        self._max_followers = max_followers
        self._check_interval = check_interval
        self._connections: dict[_Connection, _Served] = {}
        self._closing = False

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Create the socket, signal readiness, and serve clients until cancelled.

        The socket file is checked every ``check_interval``; if it was deleted,
        it is created again (with a warning) and connected clients carry on.

        Raises:
            StateDirUnsafe: the socket's directory is not private to this user,
                or a non-socket file is in the way.
            StateDirLocked: a live dsup already answers on this socket.
        """
        socketfile.check_private_dir(self.path.parent)
        await socketfile.clear_stale_socket(self.path)
        listener = socketfile.listen(self.path)
        logger.info("control socket listening on %s", self.path)
        try:
            # Connections live in ``clients``: re-creating the socket leaves them be.
            async with anyio.create_task_group() as clients:
                task_status.started()
                try:
                    while True:
                        await self._listen(listener, clients)
                        listener.close()  # its file is gone: listen anew
                        listener = await self._bind_again()
                finally:
                    self._leave(listener)
        finally:
            listener.close()

    def _leave(self, listener: socketfile.Listener) -> None:
        """Mark the shutdown in the state directory, then close the socket and connections.

        In this order, a client that finds the socket gone or sees its
        connection close (a ``tail -f``) already finds the marker: ``dsup
        ctl`` then says the node is shutting down, not that its socket was lost.
        """
        self._closing = True
        statedir.mark_shutting_down(self.path.parent)
        listener.close()
        for served in self._connections.values():
            served.scope.cancel("control server stopping")

    async def _listen(self, listener: socketfile.Listener, clients: TaskGroup) -> None:
        """Accept on ``listener`` until its file is gone from ``path``."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch, listener, tg.cancel_scope)
            while True:
                conn = await _accept(listener.sock)
                if conn is not None:
                    clients.start_soon(self._handle, _Connection(conn))

    async def _watch(self, listener: socketfile.Listener, scope: anyio.CancelScope) -> None:
        """Every ``check_interval``, make sure ``path`` is still our socket file.

        Someone may delete it (``rm``, a cleanup script); nobody could then
        reach this dsup. A file of someone else's at ``path`` is left alone.
        The directory is checked again too: once others may write to it (a
        ``chmod`` after start-up), they may put their own server there, which
        ``dsup ctl`` refuses; the error says how to close the hole.
        """
        replaced = False
        unsafe: str | None = None
        while True:
            await anyio.sleep(self._check_interval)
            problem = socketfile.directory_problem(self.path.parent)
            if problem is not None and problem != unsafe:
                logger.error(
                    "control socket directory is no longer private: %s; another user could"
                    " replace the socket (dsup ctl refuses a server of another user)",
                    problem,
                )
            elif problem is None and unsafe is not None:
                logger.info("control socket directory %s is private again", self.path.parent)
            unsafe = problem
            state = listener.state()
            if state == "missing":
                logger.warning("control socket %s was deleted; creating it again", self.path)
                scope.cancel("control socket deleted")
                return
            if state == "replaced" and not replaced:
                logger.warning(
                    "control socket %s was replaced by another file; leaving it alone", self.path
                )
            replaced = state == "replaced"

    async def _bind_again(self) -> socketfile.Listener:
        """A new listener at ``path``, retried every ``check_interval`` until it binds."""
        while True:
            try:
                listener = socketfile.listen(self.path)
            except OSError as exc:
                logger.error("control socket %s cannot be created: %s", self.path, exc)
                await anyio.sleep(self._check_interval)
            else:
                logger.info("control socket listening on %s again", self.path)
                return listener

    @property
    def clients(self) -> int:
        """Connections being served right now."""
        return len(self._connections)

    async def _handle(self, stream: _Connection) -> None:
        """Serve one connection; the task boundary: nothing escapes but cancellation.

        Shielded from the server's own cancellation: ``_leave`` ends it, after
        the shutdown marker is written.
        """
        served = _Served(stream, anyio.CancelScope(shield=True))
        if self._closing:
            served.scope.cancel("control server stopping")
        self._connections[stream] = served
        try:
            with served.scope:
                async with stream:
                    await self._converse(stream, served)
        except Exception as exc:
            if _client_left(exc):  # also inside a group: a follow's tasks end with it
                logger.debug("control client went away: %r", exc)
            else:
                logger.exception("control connection failed")
        finally:
            del self._connections[stream]

    def _admit(self, served: _Served, *, as_follower: bool) -> bool:
        """Whether a connection may be served as a command client or a follower.

        Connections whose client has left (it closed, we have not read its EOF
        yet, or its command still runs) do not count. A command client over the
        limit makes the one idle the longest give way.
        """
        limit = self._max_followers if as_follower else self._max_clients

        def others() -> list[_Served]:
            return [
                c
                for c in self._connections.values()
                if c is not served and c.is_follower == as_follower and not c.is_evicted
            ]

        if len(others()) < limit:
            return True
        alive = [c for c in others() if not _peer_left(c.stream.socket)]
        if len(alive) < limit:
            return True
        idle = [c for c in alive if c.idle_since is not None]
        if as_follower or not idle:
            return False
        oldest = min(idle, key=lambda c: c.idle_since or 0.0)
        oldest.is_evicted = True
        oldest.scope.cancel("idle connection gives way to a new one")
        logger.info("control socket: an idle connection gave way to a new one")
        return True

    async def _converse(self, stream: _Connection, served: _Served) -> None:
        if not self._admit(served, as_follower=False):
            await self._send(stream, error_response(None, ControlProtocolError("too many clients")))
            return
        try:
            actor = _peer_actor(stream)
        except AccessDenied as exc:
            await self._send(stream, error_response(None, exc))
            return
        reader = BufferedByteReceiveStream(stream)
        while True:
            served.idle_since = anyio.current_time()
            try:
                with anyio.fail_after(self._idle_timeout):
                    line = await reader.receive_until(b"\n", MAX_LINE_BYTES)
            except (anyio.IncompleteRead, anyio.EndOfStream, TimeoutError):
                return  # the client is done, or idle too long
            except anyio.DelimiterNotFound:
                reason = f"request line longer than {MAX_LINE_BYTES} bytes"
                await self._send(stream, error_response(None, ControlProtocolError(reason)))
                return
            served.idle_since = None
            request_id: RequestId = None
            try:
                request = decode_request(line)
                request_id = request_id_of(request)
                call = bind_request(request)
            except (ControlProtocolError, SupervisorError) as exc:
                await self._send(stream, error_response(request_id, exc))
                continue
            if isinstance(call, FollowRequest):
                served.is_follower = True  # from now on, counted among followers
                if not self._admit(served, as_follower=True):
                    refused = ControlProtocolError(
                        f"too many followers ({self._max_followers}); end a tail -f first"
                    )
                    await self._send(stream, error_response(request_id, refused))
                    return
                await self._follow(stream, reader, actor, request_id, call)
                return
            # A command that ran gets its answer even if the server is stopping
            # meanwhile (``shutdown`` itself stops it): shielded, bounded.
            await self._send(stream, await self._run(call, actor, request_id), shield=True)

    async def _run(
        self,
        call: Call,
        actor: Actor,
        request_id: RequestId,
    ) -> dict[str, object]:
        try:
            result = await call(self._service, actor)
        except SupervisorError as exc:
            return error_response(request_id, exc)
        except Exception as exc:
            logger.exception("control command failed unexpectedly")
            return error_response(request_id, exc)
        return {"id": request_id, "ok": True, "result": result}  # encoded element-wise

    async def _follow(
        self,
        stream: _Connection,
        reader: BufferedByteReceiveStream,
        actor: Actor,
        request_id: RequestId,
        request: FollowRequest,
    ) -> None:
        """Stream log lines until the client disconnects (or sends anything)."""
        follow = self._service.follow(
            actor, request.target, lines=request.lines, stream=request.stream
        )
        async with contextlib.AsyncExitStack() as stack:
            try:
                following = await stack.enter_async_context(follow)
            except SupervisorError as exc:
                await self._send(stream, error_response(request_id, exc))
                return
            ack = {"id": request_id, "ok": True, "streaming": True, "result": following.processes}
            await self._send(stream, ack)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_end_on_input, reader, tg.cancel_scope)
                try:
                    async for chunk in following.lines:
                        await self._send(stream, {"id": request_id, "ok": True, "event": chunk})
                except SupervisorError as exc:  # the follow ended on its own: say why
                    await self._send(stream, error_response(request_id, exc))
                tg.cancel_scope.cancel("follow ended")

    async def _send(
        self, stream: _Connection, message: Mapping[str, object], *, shield: bool = False
    ) -> None:
        with anyio.fail_after(self._send_timeout, shield=shield):
            await stream.send(encode_message(message))


async def _end_on_input(reader: BufferedByteReceiveStream, scope: anyio.CancelScope) -> None:
    """End a stream when the client disconnects or sends anything.

    No deadline on purpose: a follower may watch a quiet log for hours, and a
    unix socket always reports its peer's end.
    """
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        await reader.receive()
    scope.cancel("client left the stream")


# -- connections ---------------------------------------------------------------


_CLIENT_LEFT = (anyio.BrokenResourceError, anyio.ClosedResourceError, TimeoutError, OSError)


def _client_left(exc: BaseException) -> bool:
    """Whether ``exc`` (or every exception of a group) says the client went away."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_client_left(e) for e in exc.exceptions)
    return isinstance(exc, _CLIENT_LEFT)


def _peer_left(sock: socket.socket) -> bool:
    """Whether the client at the other end has closed (or reset) its side."""
    if sock.fileno() < 0:  # we closed it already; its task has not ended yet
        return True
    poller = select.poll()
    poller.register(sock, select.POLLRDHUP)  # POLLHUP and POLLERR come unasked
    try:
        events = poller.poll(0)
    except OSError:
        return True
    return any(e & (select.POLLRDHUP | select.POLLHUP | select.POLLERR) for _, e in events)


@dataclasses.dataclass(slots=True, eq=False)
class _Served:
    """What the server knows of one connection it serves."""

    stream: _Connection
    scope: anyio.CancelScope
    idle_since: float | None = None  # waiting for a request since then
    is_follower: bool = False
    is_evicted: bool = False


def _peer_actor(stream: _Connection) -> Actor:
    """The local user at the other end (SO_PEERCRED); only us or root may talk."""
    creds = socketfile.peer_credentials(stream.socket)
    if creds is None:  # not Linux: the 0600 socket is the guard
        return Actor.local()
    pid, uid = creds
    actor = Actor.local(uid)
    if uid not in (os.getuid(), 0):
        raise AccessDenied(actor.name, "use this control socket", "owner", "none")
    logger.debug("control client pid %d uid %d (%s)", pid, uid, actor.name)
    return actor


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
        data = await self._io(functools.partial(self.socket.recv, max_bytes), anyio.wait_readable)
        if not data:
            raise anyio.EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint()
        view = memoryview(item)
        while view:
            sent = await self._io(functools.partial(self.socket.send, view), anyio.wait_writable)
            view = view[sent:]

    async def _io(
        self, call: Callable[[], T], wait: Callable[[socket.socket], Awaitable[None]]
    ) -> T:
        """Run a non-blocking socket call, waiting with ``wait`` until it can proceed."""
        while True:
            try:
                return call()
            except BlockingIOError:
                await wait(self.socket)
            except OSError as exc:
                raise anyio.BrokenResourceError from exc

    async def send_eof(self) -> None:
        self.socket.shutdown(socket.SHUT_WR)

    async def aclose(self) -> None:
        self.socket.close()
        await anyio.lowlevel.checkpoint()
