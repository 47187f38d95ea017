"""Helpers for the control tests: a real node in-process and a small socket client.

``running_node`` builds what ``dsup run`` builds (state dir, ledger, reaper,
fleet, command service, control server) around real worker processes from
``tests/workers``, in a temporary directory, and tears it down on exit.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

from supervisor.commands.service import CommandService
from supervisor.config.schema import Config, load_config
from supervisor.control.server import ControlServer
from supervisor.process.fleet import Fleet
from supervisor.reaper.reaper import Reaper
from supervisor.state.ledger import Ledger
from supervisor.state.statedir import StateDir, open_state_dir
from supervisor.tasks.lazy import LazyTaskQueue
from supervisor.tasks.store import SqliteTaskStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from anyio.abc import SocketStream, TaskStatus

    from supervisor.commands.health import HealthSource
    from supervisor.events import EventSink
    from supervisor.output.pump import OutputConsumer
    from supervisor.tasks.queue import TaskQueue

WORKERS = Path(__file__).parent / "workers"
PY = sys.executable


def program(name: str, script: str, *args: str, **keys: object) -> str:
    """A ``[programs.NAME]`` table running ``tests/workers/SCRIPT`` with fast timings."""
    settings: dict[str, object] = {
        "command": [PY, "-u", str(WORKERS / script), *args],
        "start_seconds": 0.3,
        "start_retries": 2,
        "backoff_seconds": 0.05,
        "backoff_max_seconds": 0.1,
        "stop_timeout_seconds": 3.0,
        **keys,
    }
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    return f"[programs.{name}]\n{body}\n"


def write_config(directory: Path, *programs: str) -> Path:
    """Write a config with a private state dir under ``directory``; return its path."""
    path = directory / "dsup.toml"
    state = json.dumps(str(directory / "state"))
    text = f'[supervisor]\nname = "ctltest"\nstate_dir = {state}\n\n' + "\n".join(programs)
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Node:
    """A running node: what the tests drive and inspect."""

    config: Config
    state: StateDir
    fleet: Fleet
    ledger: Ledger
    service: CommandService
    server: ControlServer
    lazy_tasks: LazyTaskQueue

    @property
    def tasks(self) -> TaskQueue:
        """The task queue (made at start: a program takes tasks)."""
        assert self.lazy_tasks.made is not None, "no program of this node takes tasks"
        return self.lazy_tasks.made

    @property
    def socket(self) -> Path:
        return self.state.socket_path


@contextlib.asynccontextmanager
async def running_node(
    config_path: Path,
    *,
    sinks: Sequence[EventSink] = (),
    line_sinks: Sequence[OutputConsumer] = (),
    health: HealthSource | None = None,
    store: Callable[[Ledger], SqliteTaskStore] = SqliteTaskStore,
    task_poll_seconds: float = 0.2,
) -> AsyncIterator[Node]:
    """Run the node of ``config_path`` with its control socket until the block exits.

    ``sinks`` get the fleet's events too (state changes, orphans cleaned);
    ``line_sinks`` its output; ``health`` is the Discord bridge's, for ``status``;
    ``store`` makes the node's task store from its ledger; ``task_poll_seconds`` is
    its queue's ``poll_seconds``.
    """
    config = load_config(config_path)
    with (
        open_state_dir(config.supervisor.state_dir) as state,
        Ledger.open(state.ledger_path) as ledger,
    ):
        reaper = Reaper(instance_id=state.instance_id, ledger=ledger)
        fleet = Fleet(
            config, state=state, ledger=ledger, reaper=reaper, sinks=sinks, line_sinks=line_sinks
        )
        tasks = LazyTaskQueue(fleet, store(ledger), poll_seconds=task_poll_seconds)
        service = CommandService(fleet, tasks=tasks, poll_interval=0.05, health=health)
        server = ControlServer(service, state.socket_path, idle_timeout=5.0)
        async with anyio.create_task_group() as tg:
            await tg.start(fleet.run)
            await tg.start(tasks.run)
            await tg.start(_serve_until_shutdown, server, fleet)
            try:
                yield Node(config, state, fleet, ledger, service, server, tasks)
            finally:
                tg.cancel_scope.cancel("test over")


async def _serve_until_shutdown(
    server: ControlServer, fleet: Fleet, *, task_status: TaskStatus[None]
) -> None:
    """Serve commands until a shutdown is requested, as ``dsup run`` does."""
    async with anyio.create_task_group() as front:
        await front.start(server.serve)
        task_status.started()
        await fleet.wait_shutdown_requested()
        front.cancel_scope.cancel("shutdown: stop accepting commands")


class Client:
    """A JSON-lines client on one connection."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self._reader = BufferedByteReceiveStream(stream)

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def send(self, cmd: str, **args: object) -> None:
        line = json.dumps({"id": 1, "cmd": cmd, "args": args}) + "\n"
        await self.stream.send(line.encode())

    async def receive(self) -> dict[str, object]:
        """The next message (bounded wait)."""
        with anyio.fail_after(20):
            line = await self._reader.receive_until(b"\n", 64 * 1024 * 1024)
        message = json.loads(line)
        assert isinstance(message, dict)
        return message

    async def ask(self, cmd: str, **args: object) -> dict[str, object]:
        """Send one request and return its response."""
        await self.send(cmd, **args)
        return await self.receive()


@contextlib.asynccontextmanager
async def connect(path: Path) -> AsyncIterator[Client]:
    """A client connection to the control socket at ``path``."""
    with anyio.fail_after(5):
        stream = await anyio.connect_unix(path)
    async with stream:
        yield Client(stream)


async def ask(path: Path, cmd: str, **args: object) -> dict[str, object]:
    """One request on a fresh connection; the response."""
    async with connect(path) as client:
        return await client.ask(cmd, **args)


def result(response: dict[str, object]) -> dict[str, object]:
    """The ``result`` of a successful response (fails the test otherwise)."""
    assert response.get("ok") is True, response
    value = response["result"]
    assert isinstance(value, dict), response
    return value


def error_type(response: dict[str, object]) -> str:
    """The error type of a failed response (fails the test otherwise)."""
    assert response.get("ok") is False, response
    error = response["error"]
    assert isinstance(error, dict)
    return str(error["type"])


def states(node: Node) -> dict[str, str]:
    """Every process's state name."""
    return {c.name: c.status().state.value for c in node.fleet.processes()}
