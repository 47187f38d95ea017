"""A node with its bridge and relay, in this process, against the fake Discord.

``relayed_node`` wires what ``dsup run`` wires for Discord (the fleet with the relay
as a sink, the bridge's client with the sender's trace, the outbox's sender) with
the relay's windows shortened through its parameters.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from supervisor.bridge.bridge import DiscordBridge
from supervisor.bridge.health import HealthRecord
from supervisor.bridge.outbound import Outbound
from supervisor.commands.service import CommandService
from supervisor.config.schema import load_config
from supervisor.events import ProcessState, StateChanged
from supervisor.process.fleet import Fleet
from supervisor.reaper.reaper import Reaper
from supervisor.state.ledger import Ledger
from supervisor.state.statedir import open_state_dir
from supervisor.tasks.lazy import LazyTaskQueue
from supervisor.tasks.store import SqliteTaskStore
from tests.bridge._bridge import discord_table, token_file
from tests.discord_fake import GUILD_READY_TIMEOUT

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

    from supervisor.events import Event, EventSink
    from tests.discord_fake import BotAction, FakeDiscord

WORKERS = Path(__file__).parent.parent / "workers"


def program(name: str, worker: str, *args: object, **keys: object) -> str:
    """A ``[programs.NAME]`` table running ``tests/workers/WORKER`` with ``args``."""
    command = [sys.executable, "-u", str(WORKERS / worker), *map(str, args)]
    lines = [f"[programs.{name}]", f"command = {json.dumps(command)}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def note_of(event: StateChanged) -> str:
    """What shows ``event`` among the state changes of a program relaying all."""
    return f"`{event.process}` {event.old.value} → {event.new.value}"


def bot_creates(fake: FakeDiscord, channel: str = "ops") -> list[BotAction]:
    """The messages the bot created in ``channel``, in order."""
    return [a for a in fake.bot_actions(channel) if a.kind == "create"]


def notes_shown(fake: FakeDiscord, process: str, channel: str = "ops") -> list[str]:
    """The state changes of ``process`` the channel's new messages show, in order."""
    note = re.compile(re.escape(f"`{process}`") + r" [A-Z]+ → [A-Z]+")
    return note.findall("\n".join(a.content or "" for a in bot_creates(fake, channel)))


class ProgramChanges:
    """The state changes of the processes of one program, in order (an event sink)."""

    def __init__(self, program: str) -> None:
        self.program = program
        self.seen: list[StateChanged] = []

    def deliver(self, event: Event) -> None:
        if isinstance(event, StateChanged) and event.program == self.program:
            self.seen.append(event)

    def notes(self, process: str) -> list[str]:
        """The notes of ``process``'s changes as the relay words them."""
        return [note_of(e) for e in self.seen if e.process == process]

    def running(self) -> int:
        """Processes whose latest change made them RUNNING."""
        latest = {e.process: e.new for e in self.seen}
        return sum(1 for state in latest.values() if state is ProcessState.RUNNING)


def shown_in(
    creates: Sequence[BotAction],
    changes: Sequence[StateChanged],
    shows: Callable[[StateChanged], str] = note_of,
) -> list[int]:
    """For each change, the index of the first create showing it (holding
    ``shows(change)``), per process in order (-1 once one is missing)."""
    found = []
    after: dict[str, int] = {}
    for event in changes:
        text = shows(event)
        start = after.get(event.process, 0)
        index = next(
            (i for i in range(start, len(creates)) if text in (creates[i].content or "")), -1
        )
        found.append(index)
        if index < 0:
            break
        after[event.process] = index
    return found


def late_changes(
    creates: Sequence[BotAction],
    changes: Sequence[StateChanged],
    shows: Callable[[StateChanged], str] = note_of,
) -> list[str]:
    """The changes shown later than the next create but one after them (see
    :func:`shown_in`).

    Creates made after a change, before the one showing it: at the fake's 5 per 5 s
    (one every 1.2 s at most) the one in flight when it happened, at most; more, and
    the change waited for other messages' turns.
    """
    late = []
    for event, index in zip(changes, shown_in(creates, changes, shows), strict=False):
        ahead = [a for a in creates[: max(index, 0)] if _created_at(a) >= event.at]
        if index < 0 or len(ahead) > 1:
            late.append(f"{event.process} {event.new.value}: {len(ahead)} messages ahead")
    return late


def _created_at(action: BotAction) -> float:
    assert action.message is not None
    return datetime.datetime.fromisoformat(str(action.message["timestamp"])).timestamp()


@dataclass
class Relayed:
    """A running node with its relay."""

    fleet: Fleet
    service: CommandService
    ledger: Ledger
    outbound: Outbound
    bridge: DiscordBridge


async def _no_wait(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


@contextlib.asynccontextmanager
async def relayed_node(
    tmp_path: Path,
    fake: FakeDiscord,
    *programs: str,
    channels: Mapping[str, str] | None = None,
    sinks: Sequence[EventSink] = (),
    access: Mapping[str, list[int]] | None = None,
    store: Callable[[Ledger], SqliteTaskStore] = SqliteTaskStore,
    sleep: Callable[[float], Awaitable[None]] = _no_wait,
    **relay_options: Any,
) -> AsyncIterator[Relayed]:
    """Run ``programs`` with the bridge connected to ``fake`` and the relay running.

    Args:
        tmp_path: where the config and state go.
        fake: the fake Discord.
        programs: ``[programs.X]`` tables.
        channels: ``log_channel`` etc. by the fake's channel names
            (default: the log channel is ``ops``).
        sinks: more sinks for the fleet's events.
        access: ``[discord.access]`` lists by level name.
        store: makes the node's task store from its ledger.
        sleep: serves the bridge's waits (default: none at all).
        relay_options: for :class:`Relay` (``min_recover_seconds``, ``interval``...).
    """
    table = discord_table(
        fake,
        token_file(tmp_path, fake.token),
        status_channel=None,
        channels={"log_channel": "ops"} if channels is None else channels,
        **(access or {}),  # type: ignore[arg-type]
    )
    state_dir = json.dumps(str(tmp_path / "state"))
    path = tmp_path / "dsup.toml"
    path.write_text(
        f'[supervisor]\nname = "relaytest"\nstate_dir = {state_dir}\n\n'
        + "\n".join(programs)
        + "\n"
        + table,
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.discord is not None
    with (
        open_state_dir(config.supervisor.state_dir) as state,
        Ledger.open(state.ledger_path) as ledger,
    ):
        reaper = Reaper(instance_id=state.instance_id, ledger=ledger)
        health = HealthRecord()
        outbound = Outbound(
            config.discord,
            ledger,
            lambda: config.programs,
            log_dir=state.log_dir,
            health=health,
            **relay_options,
        )
        relay = outbound.relay
        fleet = Fleet(
            config,
            state=state,
            ledger=ledger,
            reaper=reaper,
            sinks=[relay, *sinks],
            line_sinks=[relay],
        )
        tasks = LazyTaskQueue(fleet, store(ledger), poll_seconds=0.2)
        service = CommandService(fleet, tasks=tasks, poll_interval=0.05)
        bridge = DiscordBridge(
            config.discord,
            node=config.supervisor.name,
            ledger=ledger,
            health=health,
            sleep=sleep,
            http_trace=outbound.sender.trace_config(),
            client_options={"guild_ready_timeout": GUILD_READY_TIMEOUT},
            outbox=outbound.outbox,
        )
        async with anyio.create_task_group() as tg:
            await tg.start(bridge.run, service)
            await tg.start(outbound.run, lambda: bridge.client)
            with anyio.fail_after(10):
                while bridge.health.snapshot().state != "connected":
                    await bridge.health.wait_changed()
            await tg.start(fleet.run)
            await tg.start(tasks.run)
            try:
                yield Relayed(fleet, service, ledger, outbound, bridge)
            finally:
                tg.cancel_scope.cancel("test over")
