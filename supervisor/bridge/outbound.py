"""What carries a node's activity to Discord: the relays, the outbox and its sender.

The node builds one :class:`Outbound` with the bridge, hands its relays to the fleet
as sinks, runs it beside the bridge, and lets it finish (bounded) at shutdown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from supervisor.bridge.progress import ProgressRelay
from supervisor.bridge.questions import QuestionRelay
from supervisor.bridge.relay import Relay, RelayChannels
from supervisor.bridge.sender import OutboxSender
from supervisor.state.outbox import Outbox

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    import discord
    from anyio.abc import TaskStatus

    from supervisor.bridge.health import HealthRecord
    from supervisor.config.schema import DiscordSpec, ProgramSpec
    from supervisor.events import EventSink
    from supervisor.state.ledger import Ledger

FINISH_SECONDS = 5.0
"""At shutdown, how long the outbox may take to empty before Discord is closed."""


class Outbound:
    """The relays (fleet sinks) and the outbox's sender of one node.

    Everything they post goes through one outbox: the relay's output, incidents,
    results and audit lines, the workers' questions and progress.

    Args:
        spec: the ``[discord]`` table (the channels).
        ledger: the node's ledger (the outbox table, the audit rows).
        programs: the node's programs now.
        log_dir: the processes' log files (incidents show their last lines).
        health: the bridge's health record (paused channels are said there).
        progress_options: passed to :class:`ProgressRelay` (tests shorten its windows).
        **relay_options: passed to :class:`Relay` (tests shorten its windows).
    """

    def __init__(
        self,
        spec: DiscordSpec,
        ledger: Ledger,
        programs: Callable[[], Mapping[str, ProgramSpec]],
        *,
        log_dir: Path,
        health: HealthRecord | None = None,
        progress_options: Mapping[str, Any] | None = None,
        **relay_options: Any,
    ) -> None:
        self.outbox = Outbox(ledger)
        self.outbox.sweep_files()  # before the bridge runs: nothing is being queued
        self.sender = OutboxSender(
            self.outbox,
            health=health,
            on_finished=lambda channel, left: self.relay.finished(channel, left),
        )
        self.relay = Relay(
            programs,
            self.outbox,
            ledger,
            log_dir=log_dir,
            channels=RelayChannels.of(spec),
            channel_wait=lambda channel: self.sender.create_wait(channel),
            edit_wait=lambda channel: self.sender.edit_wait(channel),
            hand_over=self.sender,
            **relay_options,
        )
        self.questions = QuestionRelay(spec, self.outbox, ledger, programs)
        self.progress = ProgressRelay(
            spec, self.outbox, ledger, programs, **(progress_options or {})
        )
        self._health = health

    @property
    def sinks(self) -> tuple[EventSink, ...]:
        """The fleet's event sinks among these (the relay also takes lines)."""
        return (self.relay, self.questions, self.progress)

    async def run(
        self,
        current: Callable[[], discord.Client | None],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the relays and the sender (through ``current()``, the bridge's client).

        Start it once the fleet runs: the questions the last dsup left open are
        closed then, and their messages say so.
        """
        async with anyio.create_task_group() as tg:
            await tg.start(self.relay.run)
            await tg.start(self.questions.serve)
            await tg.start(self.progress.serve)
            await tg.start(self.sender.run, current)
            task_status.started()

    async def finish(self, seconds: float = FINISH_SECONDS) -> bool:
        """Write what the relays hold and wait, bounded, for the outbox to empty.

        The wait ends at once while Discord does not answer (the gateway is down,
        or the last request failed): nothing would be sent, and the rows are kept.

        Returns:
            True when everything was sent; what is left is sent after a restart.
        """
        with anyio.move_on_after(seconds, shield=True):
            await self.relay.flush(final=True)
            await self.questions.flush()
            await self.progress.flush()
            async with anyio.create_task_group() as waits:
                waits.start_soon(self._end_when_unreachable, waits.cancel_scope)
                is_sent = await self.sender.drain(seconds)
                waits.cancel_scope.cancel("drained")
                return is_sent
        return False

    async def _end_when_unreachable(self, scope: anyio.CancelScope) -> None:
        health = self._health
        if health is None:
            return
        while health.is_reachable():
            await health.wait_changed()
        scope.cancel("Discord does not answer")
