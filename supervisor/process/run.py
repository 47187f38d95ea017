"""One run: a spawn in a new session, its pipes, pumps and log files, the reaping of its exit.

The exit comes from the process (a pidfd on Linux), never from pipe EOF, so a grandchild that
holds stdout cannot keep a dead run alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import subprocess
import sys
import termios
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from supervisor.errors import SpawnError
from supervisor.output.channel import at_eof, make_channel
from supervisor.output.logfile import RotatingLog, log_paths
from supervisor.output.pump import Pump, make_pipe
from supervisor.output.readable import call_when_readable
from supervisor.process.lazy_event import LazyEvent
from supervisor.state.records import ProcIdent
from worker_sdk import protocol

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Collection, Coroutine
    from pathlib import Path

    from anyio.abc import TaskGroup

    from supervisor.config.schema import ProgramSpec
    from supervisor.events import Stream
    from supervisor.output.pump import OutputConsumer
    from supervisor.output.readable import Reader, TaskStarter
    from supervisor.process.worker_link import WorkerLink
    from supervisor.reaper.reaper import Reaper
    from supervisor.state.ledger import Ledger

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.1  # waitpid poll interval where pidfd_open is missing
CATCH_UP_POLL_SECONDS = 0.005  # how often catch_up looks at the pipes
STREAMS: tuple[Stream, Stream] = ("stdout", "stderr")


def child_env(
    spec: ProgramSpec,
    *,
    node: str,
    instance_id: str,
    process: str,
    run_id: str,
    channel_fd: int | None = None,
    secrets: Collection[str] = (),
) -> dict[str, str]:
    """Return a run's environment: dsup's, then ``spec.env``, then the markers.

    ``PYTHONUNBUFFERED=1`` is added when ``spec.unbuffered`` unless ``spec.env``
    sets it. The markers always win, so a dsup run under a dsup marks its own;
    ``DSUP_FD`` names the worker's end of its channel, or is removed (a dsup
    run under a dsup must not talk on its parent's channel). The variables
    named in ``secrets`` (the bot token's) are dsup's own: a worker gets them
    only through ``spec.env``, so one printing its environment shows no token.
    """
    env = {k: v for k, v in os.environ.items() if k not in secrets}
    if spec.unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    env.update(spec.env)
    env[protocol.NODE] = node
    env[protocol.INSTANCE] = instance_id
    env[protocol.PROGRAM] = spec.name
    env[protocol.PROCESS] = process
    env[protocol.RUN_ID] = run_id
    env.pop(protocol.FD, None)
    if channel_fd is not None:
        env[protocol.FD] = str(channel_fd)
    return env


@dataclass(eq=False, slots=True, kw_only=True)
class Run:
    """One spawned main process, its pipes, logs and watcher tasks.

    Attributes:
        run_id: the ``DSUP_RUN_ID`` of this run (32 random hex digits).
        process: ``program:index``.
        program: the program name.
        popen: the spawned process (never waited through Popen).
        ident: pid and create_time; create_time is 0.0 until :meth:`identify`,
            so the placeholder matches no stranger.
        started_at: monotonic spawn time (the caller's clock).
        started_wall: wall-clock spawn time.
        exit_code: the status passed to ``exit()``, once reaped.
        exit_signal: the signal that killed it, once reaped.
        exited: set once the main process is reaped.
        on_exit: called (on the loop, once) when the main process is reaped, after
            ``exited`` is set: whoever waits for the exit without a task.
        fds: the read ends of the output pipes, in :data:`STREAMS` order.
        logs: the log files, in :data:`STREAMS` order (tuples: a dict each cost a
            resting process 184 bytes).
        channel: dsup's end of the worker's channel (``DSUP_FD``), if it has one.
        link: what reads the channel, once the worker first wrote to it.
    """

    run_id: str
    process: str
    program: str
    popen: subprocess.Popen[bytes]
    ident: ProcIdent
    started_at: float
    started_wall: float
    fds: tuple[int, ...]
    logs: tuple[RotatingLog, ...]
    pidfd: int | None
    channel: socket.socket | None = None
    link: WorkerLink | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    exited: LazyEvent = field(default_factory=LazyEvent)
    on_exit: Callable[[], None] | None = None
    pumps_done: LazyEvent = field(default_factory=LazyEvent)
    pumps_left: int = len(STREAMS)
    readers: list[Reader] = field(default_factory=list)
    exit_watch: Callable[[], None] | None = None
    tasks: _Tasks | None = None

    @property
    def pid(self) -> int:
        """The main process's pid."""
        return self.popen.pid

    async def identify(self, reaper: Reaper) -> None:
        """Read the main process's create_time into ``ident``.

        Call it before :meth:`start_watchers`: until the exit watcher reaps it,
        the child exists (as a zombie at worst), so its create_time can be read
        even when it has already exited.
        """
        ident = await reaper.identify(self.pid, run_id=self.run_id, process=self.process)
        if ident is None:  # only if called after the reaping: keep the placeholder
            logger.warning("process %s (pid %d): no create_time", self.process, self.pid)
        else:
            self.ident = ident

    async def record_start(self, ledger: Ledger) -> None:
        """Record the run durably in the ledger (after :meth:`identify`)."""
        await anyio.to_thread.run_sync(
            functools.partial(
                ledger.record_run_start,
                run_id=self.run_id,
                process=self.process,
                program=self.program,
                pid=self.pid,
                create_time=self.ident.create_time,
                started_at=self.started_wall,
            )
        )

    async def record_exit(self, ledger: Ledger) -> None:
        """Record how the main process ended (once it is reaped, or given up on)."""
        await anyio.to_thread.run_sync(
            functools.partial(
                ledger.record_run_exit,
                run_id=self.run_id,
                exit_code=self.exit_code,
                exit_signal=self.exit_signal,
                ended_at=time.time(),
            )
        )

    def start_watchers(
        self,
        tg: TaskGroup,
        *,
        consumer: OutputConsumer | None,
        max_line_bytes: int,
        link: Callable[[], WorkerLink] | None = None,
    ) -> None:
        """Start both pumps, the wait for the worker's first word on its channel, the reaping.

        On asyncio the pumps are loop readers, with no task (``tg`` is used
        only by other backends); so is the channel until the worker writes to
        it: only then is its :class:`WorkerLink` made and served in a task of
        ``tg``. A channel closed before any message needs neither. Only
        :meth:`drain` and :meth:`end_watchers` end them: cancelling the caller
        does not stop the capture of what a tree writes while it is being
        stopped. The exit is reaped as soon as it happens, whoever waits for
        it: the pidfd is a loop reader too (where pidfd_open is missing, a task
        of ``tg`` polls ``waitpid``). ``tg`` may outlive the caller's task:
        :meth:`watchers_ended` waits for the run's own tasks in it.

        Args:
            link: makes the reader of :attr:`channel` (required when the run has one).
        """
        tasks = self.tasks = _Tasks(tg)
        self.pumps_left = len(STREAMS) + (link is not None)
        for stream, fd, log in zip(STREAMS, self.fds, self.logs, strict=True):
            pumped = Pump(
                fd,
                process=self.process,
                stream=stream,
                log=log,
                consumer=consumer,
                max_line_bytes=max_line_bytes,
                on_end=self.reader_ended,
            )
            self.readers.append(pumped)
            pumped.start(tasks)
        if link is not None:
            self.readers.append(_ChannelWait(self, tasks, link))
        self._watch_exit(tasks)

    async def catch_up(self, limit: float) -> None:
        """Wait, up to ``limit`` seconds, until the pumps have read what the pipes hold now.

        Called when the main process has exited: its last words (a crash's
        traceback) are in the pipes already, and are handed over before its
        exit is reported. A descendant that keeps writing costs ``limit``.
        """
        with anyio.move_on_after(limit):
            # No event tells that a pipe is empty: look, between the pumps' reads.
            while not self.pumps_done.is_set() and any(map(_unread, self._read_fds())):  # noqa: ASYNC110
                await anyio.sleep(CATCH_UP_POLL_SECONDS)

    async def drain(self, grace: float) -> None:
        """Let the pumps read to EOF for up to ``grace`` seconds, then end them."""
        with anyio.move_on_after(grace):
            await self.pumps_done.wait()
        self._end_readers()

    def end_watchers(self) -> None:
        """End every watcher (the exit watcher too: a last resort)."""
        if not self.exited.is_set():
            logger.error("process %s (pid %d): not reaped; giving up on it", self.process, self.pid)
        self._end_readers()
        if self.exit_watch is not None:
            self.exit_watch()

    async def watchers_ended(self) -> None:
        """Return once the run's tasks have ended (after :meth:`end_watchers`; shield it)."""
        if self.tasks is not None:
            await self.tasks.wait_ended()

    def _end_readers(self) -> None:
        for reader in self.readers:
            reader.stop()

    def pipe_inodes(self) -> frozenset[int]:
        """The inodes of the output pipes: a process holding one came from this run."""
        return frozenset(os.fstat(fd).st_ino for fd in self.fds)

    def close(self) -> None:
        """Release the fds, channel and logs (once :meth:`watchers_ended` returned)."""
        for fd in [*self.fds, *([self.pidfd] if self.pidfd is not None else [])]:
            os.close(fd)
        if self.channel is not None:
            self.channel.close()
        for log in self.logs:
            log.close()

    def _read_fds(self) -> list[int]:
        """The pipes' read ends, and the channel's."""
        channel = [self.channel.fileno()] if self.channel is not None else []
        return [*self.fds, *channel]

    async def serve_link(self, link: WorkerLink, scope: anyio.CancelScope) -> None:
        """Serve the channel in ``scope`` (shielded, ended by the run) until its EOF."""
        with scope:
            try:
                await link.serve()
            except Exception:  # a task boundary: the channel ends, the run goes on
                logger.exception(
                    "process %s (pid %d): worker channel failed", self.process, self.pid
                )
        self.reader_ended()

    def _watch_exit(self, tg: TaskStarter) -> None:
        """Reap the main process as soon as it exits (the pidfd is readable then)."""
        if self.pidfd is not None:
            self.exit_watch = call_when_readable(self.pidfd, self._reap, tg).stop
        else:
            scope = anyio.CancelScope(shield=True)
            self.exit_watch = scope.cancel
            tg.start_soon(self._poll_exit, scope)

    async def _poll_exit(self, scope: anyio.CancelScope) -> None:
        with scope:
            self._reap()
            while not self.exited.is_set():
                await anyio.sleep(POLL_SECONDS)
                self._reap()

    def _reap(self) -> None:
        """Reap the main process if it has exited (never blocks)."""
        if self.exited.is_set():
            return
        try:
            reaped, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            logger.warning("pid %d: reaped by someone else; exit status unknown", self.pid)
            reaped, status = self.pid, None
        if reaped != self.pid:
            return
        if self.exit_watch is not None and self.pidfd is not None:
            self.exit_watch()  # the pidfd stays readable: no more callbacks
        self._reaped(status)

    def _reaped(self, status: int | None) -> None:
        """Take the wait status of the reaped main process (None: reaped elsewhere)."""
        if self.exited.is_set():
            return
        code = os.waitstatus_to_exitcode(status) if status is not None else None
        # Popen must never wait for this pid again, nor warn that it still runs.
        self.popen.returncode = code if code is not None else -1
        if code is not None and code < 0:
            self.exit_signal = -code
        else:
            self.exit_code = code
        self.exited.set()
        if self.on_exit is not None:
            self.on_exit()

    def reader_ended(self) -> None:
        """A pump, or the channel's reader, has ended."""
        self.pumps_left -= 1
        if not self.pumps_left:
            self.pumps_done.set()


class _ChannelWait:
    """A run's channel until its worker first writes: a loop reader, no task, no link yet.

    Most workers never use the channel; they cost no task and no :class:`WorkerLink`.
    """

    __slots__ = ("_link", "_reader", "_run", "_scope", "_tg")

    def __init__(self, run: Run, tg: TaskStarter, link: Callable[[], WorkerLink]) -> None:
        assert run.channel is not None  # a link reads the run's channel
        self._run = run
        self._tg = tg
        self._link = link
        self._scope: anyio.CancelScope | None = None
        self._reader: Reader | None = call_when_readable(run.channel.fileno(), self._readable, tg)

    def stop(self) -> None:
        """End the wait, or the link's task once it runs (the run is ending)."""
        if self._scope is not None:
            self._scope.cancel()
        elif self._reader is not None:
            self._reader.stop()
            self._reader = None
            self._run.reader_ended()

    def _readable(self) -> None:
        """The worker wrote, or every copy of its end is closed."""
        if self._reader is None:
            return
        self._reader.stop()
        self._reader = None
        assert self._run.channel is not None
        if at_eof(self._run.channel):  # closed before any message: nothing to serve
            self._run.reader_ended()
            return
        link = self._run.link = self._link()
        self._scope = anyio.CancelScope(shield=True)
        self._tg.start_soon(self._run.serve_link, link, self._scope)


class _Tasks:
    """A run's own tasks in a task group that may outlive the caller's task, counted.

    Its fds may be closed only once they have ended.
    """

    __slots__ = ("_ended", "_left", "_tg")

    def __init__(self, tg: TaskGroup) -> None:
        self._tg = tg
        self._left = 0
        self._ended: anyio.Event | None = None

    def start_soon(
        self, func: Callable[..., Coroutine[object, object, object]], *args: object
    ) -> None:
        """Run ``func(*args)`` in a task of the group."""
        self._left += 1
        self._tg.start_soon(self._counted, func, args, name=getattr(func, "__qualname__", None))

    async def _counted(
        self, func: Callable[..., Coroutine[object, object, object]], args: tuple[object, ...]
    ) -> None:
        try:
            await func(*args)
        finally:
            self._left -= 1
            if not self._left and self._ended is not None:
                self._ended.set()

    async def wait_ended(self) -> None:
        """Return once every task started has ended."""
        while self._left:
            self._ended = anyio.Event()
            await self._ended.wait()
        self._ended = None


def _unread(fd: int) -> int:
    """The bytes waiting in the pipe ``fd`` (``FIONREAD``)."""
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, bytes(4)), sys.byteorder)


def spawn(
    spec: ProgramSpec,
    *,
    process: str,
    node: str,
    instance_id: str,
    log_dir: Path,
    clock: Callable[[], float],
    stdin: int = subprocess.DEVNULL,
    with_channel: bool = False,
    secrets: Collection[str] = (),
) -> Run:
    """Spawn a run's main process in a new session, stdin from /dev/null by default.

    Args:
        spec: the program (command, cwd, env, log sizes).
        process: ``program:index``.
        node: the ``DSUP_NODE`` marker.
        instance_id: the ``DSUP_INSTANCE`` marker.
        log_dir: where the run's output is logged.
        clock: the monotonic clock for ``Run.started_at``.
        stdin: an fd for the child's stdin (a task's text), the caller's to close.
        with_channel: give the worker a channel to dsup (``DSUP_FD``).
        secrets: variables of dsup's environment the worker does not get.

    Raises:
        SpawnError: the executable is missing or not executable, the cwd is
            bad, or a pipe or log cannot be opened; nothing is left open.
    """
    run_id = os.urandom(16).hex()
    paths = log_paths(log_dir, process)
    logs: list[RotatingLog] = []
    fds: list[int] = []
    ends: dict[Stream, int] = {}
    channel: socket.socket | None = None
    theirs: int | None = None
    with contextlib.ExitStack() as always, contextlib.ExitStack() as on_fail:
        try:
            for stream, path in zip(STREAMS, paths, strict=True):
                logs.append(
                    on_fail.enter_context(
                        RotatingLog(path, max_bytes=spec.log_max_bytes, backups=spec.log_backups)
                    )
                )
                fd, ends[stream] = make_pipe()
                fds.append(fd)
                on_fail.callback(os.close, fd)
                always.callback(os.close, ends[stream])
            if with_channel:
                channel, theirs = make_channel()
                on_fail.callback(channel.close)
                always.callback(os.close, theirs)
            env = child_env(
                spec,
                node=node,
                instance_id=instance_id,
                process=process,
                run_id=run_id,
                channel_fd=theirs,
                secrets=secrets,
            )
            popen = subprocess.Popen(
                spec.command,
                cwd=spec.cwd,
                env=env,
                stdin=stdin,
                stdout=ends["stdout"],
                stderr=ends["stderr"],
                start_new_session=True,
                close_fds=True,
                pass_fds=(theirs,) if theirs is not None else (),
            )
        except (OSError, ValueError) as exc:
            raise SpawnError(process, spec.command, _spawn_reason(exc)) from exc
        on_fail.pop_all()
    return Run(
        run_id=run_id,
        process=process,
        program=spec.name,
        popen=popen,
        ident=ProcIdent(popen.pid, 0.0),
        started_at=clock(),
        started_wall=time.time(),
        fds=tuple(fds),
        logs=tuple(logs),
        pidfd=_pidfd_open(popen.pid),
        channel=channel,
    )


def _spawn_reason(exc: OSError | ValueError) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename is not None else ""
        return f"{exc.strerror}{where}"
    return str(exc)


def _pidfd_open(pid: int) -> int | None:
    """Return a pidfd for ``pid``, or None where the kernel or Python lacks them."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError) as exc:
        logger.debug("pid %d: no pidfd (%s); polling waitpid", pid, exc)
        return None
