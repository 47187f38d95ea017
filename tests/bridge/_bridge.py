"""Helpers for the bridge tests: a real node, its bridge, and the fake Discord.

``bridged_node`` runs what ``dsup run`` runs (fleet, command service, control
socket) plus the :class:`DiscordBridge` and the outbox's sender (no relay), pointed
at a running fake, with its token in a private file; it returns once the bridge is
connected. ``dsup_process`` runs
the real ``dsup run`` as a subprocess instead, for tests that stop or kill it.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from supervisor.bridge.board import Board
from supervisor.bridge.bridge import DiscordBridge
from supervisor.bridge.health import HealthRecord
from supervisor.bridge.sender import OutboxSender
from supervisor.config.schema import load_config
from supervisor.state.outbox import Outbox
from tests._control import running_node, write_config
from tests.discord_fake import GUILD_READY_TIMEOUT

if TYPE_CHECKING:
    import signal
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
    from pathlib import Path

    from anyio.abc import Process

    from supervisor.bridge.context import BridgeContext
    from supervisor.config.schema import Config
    from supervisor.events import Event
    from tests._control import Node
    from tests.discord_fake import FakeDiscord


def discord_table(
    fake: FakeDiscord,
    token_file: Path,
    *,
    status_channel: str | None = "general",
    interval: float = 0.2,
    channels: Mapping[str, str] | None = None,
    **access: list[int],
) -> str:
    """The ``[discord]`` table of a node served by ``fake``.

    ``channels`` maps keys such as ``log_channel`` to the fake's channel names.
    """
    keys: dict[str, object] = {
        "token_file": str(token_file),
        "guild_id": fake.guild_id,
        "api_base": fake.api_base,
        "gateway_url": fake.gateway_url,
        "status_interval_seconds": interval,
    }
    if status_channel is not None:
        keys["status_channel"] = fake.channel(status_channel).id
    keys |= {key: fake.channel(name).id for key, name in (channels or {}).items()}
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in keys.items())
    levels = "\n".join(f"{k} = {json.dumps(v)}" for k, v in access.items())
    return f"[discord]\n{body}\n\n[discord.access]\n{levels}\n"


def board_texts(fake: FakeDiscord, channel: str = "general") -> list[str]:
    """The text of each board the bot has in ``channel``."""
    return [str(m["embeds"][0]["description"]) for m in fake.bot_messages(channel)]


def unsent_rows(config: Path) -> list[str]:
    """The content of the outbox's rows not sent yet, oldest first (read-only, beside a
    running dsup or after it exited; none before the ledger has its tables)."""
    uri = f"file:{config.parent / 'state' / 'ledger.sqlite3'}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            rows = db.execute("SELECT content FROM outbox WHERE status = 'pending' ORDER BY id")
            return [str(content) for (content,) in rows]
    except sqlite3.OperationalError:
        return []


def token_file(directory: Path, token: str) -> Path:
    """A private (0600) file holding ``token``."""
    path = directory / "token"
    path.write_text(token + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def node_config(
    directory: Path, fake: FakeDiscord, programs: str, *, name: str, channels: Mapping[str, str]
) -> Path:
    """A ``dsup.toml`` in ``directory``: ``programs`` and a ``[discord]`` table for ``fake``.

    No status board; ``channels`` as for :func:`discord_table`; state in ``state/``.
    """
    table = discord_table(
        fake, token_file(directory, fake.token), status_channel=None, channels=channels
    )
    path = directory / "dsup.toml"
    path.write_text(
        f'[supervisor]\nname = "{name}"\nstate_dir = "state"\n\n{programs}\n{table}',
        encoding="utf-8",
    )
    return path


STARTED_SECONDS = 20
"""How long a real ``dsup run`` may take to show its first message on a loaded 2-core
machine: its imports, the start-up sweep, the gateway's connect and the first send."""


@contextlib.asynccontextmanager
async def dsup_process(
    config: Path, *options: str, reap_seconds: float = 20
) -> AsyncIterator[Process]:
    """The real ``dsup run --quiet OPTIONS`` on ``config`` as a subprocess (stderr to
    ``dsup.err``).

    Killed if still running when the block ends, and waited for (``reap_seconds``).
    """
    with (config.parent / "dsup.err").open("ab") as errors:
        proc = await anyio.open_process(
            [sys.executable, "-m", "supervisor", "run", "--quiet", *options, str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    async with proc:
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.kill()
            with anyio.fail_after(reap_seconds, shield=True):
                await proc.wait()


async def stop_process(proc: Process, signum: signal.Signals) -> int:
    """Send ``signum`` to ``proc``; its exit status (within 20 s)."""
    proc.send_signal(signum)
    with anyio.fail_after(20):
        return await proc.wait()


@dataclass
class Bridged:
    """A node with its bridge and the bridge's outbox sender."""

    node: Node
    bridge: DiscordBridge
    sender: OutboxSender


class _Forward:
    """The fleet's events to the bridge, made after the fleet (it needs the ledger)."""

    bridge: DiscordBridge | None = None

    def deliver(self, event: Event) -> None:
        if self.bridge is not None:
            self.bridge.deliver(event)


def _quick_board(context: BridgeContext) -> Board:
    return Board(context, retry_seconds=0.3, channel_retry_seconds=0.5)


async def _no_wait(seconds: float) -> None:
    """A sleep that only yields: backoff waits are recorded, not served."""
    await anyio.lowlevel.checkpoint()


@contextlib.asynccontextmanager
async def bridged_node(
    tmp_path: Path,
    fake: FakeDiscord,
    *programs: str,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    wait_connected: bool = True,
    board: Callable[[BridgeContext], Board] | None = None,
    **table: object,
) -> AsyncIterator[Bridged]:
    """Run a node of ``programs`` with its bridge connected to ``fake``.

    The board's first retry comes after 0.3 s (0.5 s for a refused channel),
    unless ``board`` makes it; ``sleep`` serves the bridge's reconnection waits
    (default: none at all).
    """
    secret = token_file(tmp_path, fake.token)
    discord = discord_table(fake, secret, **table)  # type: ignore[arg-type]
    path = write_config(tmp_path, *programs, discord)
    config = load_config(path)
    health = HealthRecord()
    try:
        async with _bridged(
            path, config, health, sleep, board, wait_connected=wait_connected
        ) as bridged:
            yield bridged
    except BaseExceptionGroup as group:  # a failed assertion, raised as itself
        while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
            group = group.exceptions[0]
        raise group from None


@contextlib.asynccontextmanager
async def _bridged(
    path: Path,
    config: Config,
    health: HealthRecord,
    sleep: Callable[[float], Awaitable[None]] | None,
    board: Callable[[BridgeContext], Board] | None,
    *,
    wait_connected: bool = True,
) -> AsyncIterator[Bridged]:
    assert config.discord is not None
    forward = _Forward()
    async with running_node(path, health=health.snapshot, sinks=[forward]) as node:
        outbox = Outbox(node.ledger)  # answers to mentions go through it
        sender = OutboxSender(outbox)
        bridge = forward.bridge = DiscordBridge(
            config.discord,
            node=config.supervisor.name,
            ledger=node.ledger,
            health=health,
            sleep=sleep or _no_wait,
            http_trace=sender.trace_config(),
            client_options={"guild_ready_timeout": GUILD_READY_TIMEOUT},
            board=board or _quick_board,
            outbox=outbox,
        )
        async with anyio.create_task_group() as tg:
            await tg.start(bridge.run, node.service)
            await tg.start(sender.run, lambda: bridge.client)
            if wait_connected:
                with anyio.fail_after(10):
                    while bridge.health.snapshot().state != "connected":
                        await bridge.health.wait_changed()
            try:
                yield Bridged(node=node, bridge=bridge, sender=sender)
            finally:
                tg.cancel_scope.cancel("test over")
