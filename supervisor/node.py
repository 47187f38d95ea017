"""``dsup run``: one node in the foreground, from the start-up sweep to an ordered shutdown.

docs/architecture.md gives the order. SIGINT, SIGTERM, SIGHUP and SIGQUIT shut down gracefully,
a second SIGINT kills at once, and Ctrl-Z only gets a note: a stopped dsup stalls every pipe.
"""

from __future__ import annotations

import functools
import logging
import resource
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from supervisor.commands.service import CommandService
from supervisor.config.preflight import preflight
from supervisor.console.console import Console, ConsoleMode
from supervisor.control.server import ControlServer
from supervisor.errors import SupervisorError
from supervisor.events import OrphansCleaned
from supervisor.output.allocator import share_one_arena
from supervisor.process.fleet import Fleet
from supervisor.reaper.reaper import Reaper
from supervisor.state.ledger import Ledger
from supervisor.state.statedir import open_state_dir
from supervisor.tasks.lazy import LazyTaskQueue
from supervisor.tasks.store import SqliteTaskStore

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from anyio.abc import TaskStatus

    from supervisor.bridge.bridge import DiscordBridge
    from supervisor.bridge.outbound import Outbound
    from supervisor.bridge.relay import Relay
    from supervisor.config.schema import Config
    from supervisor.events import EventSink

logger = logging.getLogger(__name__)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
WORKER_THREADS = 4
"""Threads for the node's blocking calls (sqlite, /proc, psutil, log files), all short.

anyio allows 40; a start-up of hundreds of processes used them all, and each thread's stack
and malloc arena stayed resident after it ended (about 1 MiB for 40)."""


@dataclass(slots=True)
class _Outcome:
    """How the node was asked to stop."""

    graceful: bool = False
    hard: bool = False


def run_node(
    config: Config, *, mode: ConsoleMode = "all", json_logs: bool = False, discord: bool = True
) -> int:
    """Supervise ``config`` in the foreground until a signal or ``shutdown``.

    With ``discord`` and a ``[discord]`` table, the Discord bridge runs too
    (discord.py is imported only then).

    Returns:
        The process exit code: 0 after a graceful shutdown, 1 when a second
        SIGINT killed the processes instead.

    Raises:
        SupervisorError: the node could not run (the state_dir is held or
            unsafe, its control socket cannot be made); every process it had
            started has been stopped.
    """
    _raise_fd_limit()
    share_one_arena()  # before the first thread
    try:
        return anyio.run(_run, config, mode, json_logs, discord, backend="asyncio")
    except* SupervisorError as group:
        # A known failure deep in the task tree (a file in the control socket's
        # place...): the CLI turns it into one message, not a group's traceback.
        raise _first(group) from None


def _first(group: BaseExceptionGroup[SupervisorError]) -> SupervisorError:
    """The first error of a (nested) exception group."""
    exc = group.exceptions[0]
    return exc if isinstance(exc, SupervisorError) else _first(exc)


def _raise_fd_limit() -> None:
    """Lift the soft limit on open files to the hard one.

    Each live process holds five descriptors (pidfd, two pipes, two log files),
    so the usual soft limit of 1024 would refuse spawns at about 200 processes.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        logger.debug("open files limit raised from %d to %d", soft, hard)


async def _run(config: Config, mode: ConsoleMode, json_logs: bool, discord: bool) -> int:
    anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
    with (
        open_state_dir(config.supervisor.state_dir) as state,
        Ledger.open(state.ledger_path) as ledger,
    ):
        reaper = Reaper(instance_id=state.instance_id, ledger=ledger)
        if not reaper.become_subreaper():
            logger.info("not a child subreaper here: double-forked orphans are found by sweeps")
        fleet: Fleet | None = None
        console = Console(
            stream=sys.stdout,
            mode=mode,
            json_logs=json_logs,
            status=lambda: [c.status() for c in fleet.processes()] if fleet else [],
            node=config.supervisor.name,
        )
        bridge, outbound = (
            _bridge(config, ledger, state.log_dir, lambda: fleet.config if fleet else config)
            if discord
            else (None, None)
        )
        # A console that shows no output (--quiet) takes no lines: the pumps skip it.
        line_sinks: list[Console | Relay] = [console] if mode != "quiet" else []
        if outbound is not None:
            line_sinks.append(outbound.relay)
        sinks: list[EventSink] = [console, *(outbound.sinks if outbound is not None else ())]
        fleet = Fleet(
            config,
            state=state,
            ledger=ledger,
            reaper=reaper,
            sinks=[*sinks, bridge] if bridge else sinks,  # the bridge: its board wakes up
            line_sinks=line_sinks,
        )
        tasks = LazyTaskQueue(fleet, SqliteTaskStore(ledger))  # the workers' broker too
        outcome = _Outcome()
        service = CommandService(
            fleet,
            tasks=tasks,
            health=bridge.health_now if bridge else None,
            farewell_seconds=bridge.farewell_seconds if bridge else 0.0,
        )
        server = ControlServer(service, state.socket_path)
        async with anyio.create_task_group() as services:
            # The console first: with --json-logs it takes the sweep's log records too.
            await services.start(console.run)
            for warning in preflight(config):  # what `dsup check` warns of, said once
                logger.warning("%s: %s", config.path, warning)
            # Signals next: a Ctrl-C during the sweep then stops the node cleanly.
            await services.start(_watch_signals, fleet, outcome)
            cleaned = await reaper.startup_sweep()
            if cleaned:
                for sink in sinks:
                    sink.deliver(OrphansCleaned(pids=cleaned, reason="startup"))
            async with anyio.create_task_group() as core:
                await core.start(fleet.run)
                if bridge is not None:
                    # After the fleet, and in the outer group: it connects in the
                    # background and shows the fleet's last states until the end.
                    await services.start(functools.partial(bridge.run, service))
                if outbound is not None and bridge is not None:
                    client = bridge
                    await services.start(outbound.run, lambda: client.client)
                async with anyio.create_task_group() as work:
                    await work.start(tasks.run)
                    async with anyio.create_task_group() as front:
                        await front.start(server.serve)
                        await fleet.wait_shutdown_requested()
                        front.cancel_scope.cancel("shutdown: stop accepting commands")
                    work.cancel_scope.cancel("shutdown: stop the tasks under way")
            # Every process has been stopped; end whatever escaped its tree.
            await reaper.sweep(live_run_ids=(), is_last=True)
            if outbound is not None:
                # The processes' last words reach Discord before it is closed (bounded).
                await outbound.finish()
            services.cancel_scope.cancel("shutdown complete")
    return 1 if outcome.hard else 0


def _bridge(
    config: Config, ledger: Ledger, log_dir: Path, current: Callable[[], Config]
) -> tuple[DiscordBridge | None, Outbound | None]:
    """The Discord bridge and its relay when the config has ``[discord]``.

    discord.py is imported only then. ``current`` returns the config in force
    (a reload changes what each program relays).
    """
    if config.discord is None:
        return None, None
    from supervisor.bridge.bridge import DiscordBridge
    from supervisor.bridge.health import HealthRecord
    from supervisor.bridge.outbound import Outbound

    health = HealthRecord()
    outbound = Outbound(
        config.discord, ledger, lambda: current().programs, log_dir=log_dir, health=health
    )
    bridge = DiscordBridge(
        config.discord,
        node=config.supervisor.name,
        ledger=ledger,
        health=health,
        http_trace=outbound.sender.trace_config(),
        outbox=outbound.outbox,
    )
    return bridge, outbound


async def _watch_signals(
    fleet: Fleet, outcome: _Outcome, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Turn signals into a graceful shutdown, a second SIGINT into a hard one; keep Ctrl-Z out.

    SIGHUP and SIGQUIT count as SIGTERM: a closed terminal or a lost SSH session
    must stop the fleet cleanly rather than kill dsup and orphan every worker.
    SIGTSTP (Ctrl-Z) is caught, not ignored: a stopped dsup would freeze every
    worker whose output pipe fills, and a caught signal (unlike an ignored one)
    is back to its default in the children dsup starts.
    """
    with anyio.open_signal_receiver(*_STOP_SIGNALS, signal.SIGTSTP) as signals:
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGTSTP:
                logger.warning("dsup ignores Ctrl-Z (SIGTSTP); Ctrl-C stops the fleet")
            elif not outcome.graceful:
                outcome.graceful = True
                hint = " (Ctrl-C again to kill them at once)" if signum == signal.SIGINT else ""
                logger.warning("%s: stopping every process%s", signum.name, hint)
                fleet.request_shutdown()
            elif signum == signal.SIGINT and not outcome.hard:
                outcome.hard = True
                logger.warning("second SIGINT: killing every process group now")
                fleet.kill_all()
