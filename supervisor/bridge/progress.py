"""Workers' progress in Discord: one message per run, edited in place, finished at the end.

One task posts each run's bar to the results channel and edits it at most every
:data:`EDIT_SECONDS`; runs kept and requests per tick are bounded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import discord

from supervisor import humanize
from supervisor.bridge.questions import channel_of, ready_client
from supervisor.bridge.respond import NO_MENTIONS
from supervisor.config.schema import Relay
from supervisor.events import ProgressReported, StateChanged

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from anyio.abc import TaskStatus

    from supervisor.config.schema import DiscordSpec, ProgramSpec
    from supervisor.events import Event, Progress

logger = logging.getLogger(__name__)

EDIT_SECONDS = 5.0
"""The least time between two edits of one run's progress message."""
TICK_SECONDS = 1.0
"""Time between two looks at what changed."""
REQUESTS_PER_TICK = 4
"""Posts and edits per tick at most, across runs (the channel's rate stays low)."""
MAX_RUNS = 100
"""Runs whose progress is tracked at once; beyond, new runs are not shown."""


@dataclass(slots=True)
class _Run:
    process: str
    progress: Progress
    message_id: int | None = None
    shown_at: float = float("-inf")
    dirty: bool = True
    ended: str = ""  # why the run is over: "" while it runs


def progress_text(process: str, progress: Progress, ended: str = "") -> str:
    """The message: who, the bar and percentage, the worker's text, and the end."""
    text = discord.utils.escape_mentions(discord.utils.escape_markdown(progress.text))
    line = f"**{process}** `{humanize.progress_bar(progress.fraction, 20)}`"
    if text:
        line += f" {text[:200]}"
    return f"{line}\n{ended}" if ended else line


class ProgressRelay:
    """Shows the progress of a node's workers in Discord. A fleet ``EventSink``.

    Args:
        spec: the ``[discord]`` table (the results channel, else the log channel).
        programs: the node's programs now (each one's ``relay``).
        clock: monotonic seconds.
        edit_seconds: see :data:`EDIT_SECONDS`.
        tick_seconds: see :data:`TICK_SECONDS`.
    """

    def __init__(
        self,
        spec: DiscordSpec,
        programs: Callable[[], Mapping[str, ProgramSpec]],
        *,
        clock: Callable[[], float] = anyio.current_time,
        edit_seconds: float = EDIT_SECONDS,
        tick_seconds: float = TICK_SECONDS,
    ) -> None:
        self.channel_id = spec.results_channel or spec.log_channel
        self._programs = programs
        self._clock = clock
        self._edit = edit_seconds
        self._tick = tick_seconds
        self._runs: dict[str, _Run] = {}

    def deliver(self, event: Event) -> None:
        """Keep a run's latest progress, or note that it ended; never blocks."""
        if isinstance(event, ProgressReported):
            run = self._runs.get(event.run_id)
            if run is not None:
                run.progress, run.dirty = event.progress, True
            elif len(self._runs) < MAX_RUNS and self._relays(event.process):
                self._runs[event.run_id] = _Run(event.process, event.progress)
        elif (
            isinstance(event, StateChanged)
            and event.run_id in self._runs
            and not event.new.is_alive
        ):
            run = self._runs[event.run_id]
            run.ended, run.dirty = f"Ended: {event.new.value} ({event.reason})", True

    def _relays(self, process: str) -> bool:
        spec = self._programs().get(process.rpartition(":")[0])
        relayed = spec is not None and spec.relay in (Relay.RESULTS, Relay.ALL)
        return bool(self.channel_id) and relayed

    async def serve(
        self,
        current: Callable[[], discord.Client | None],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Post and edit progress messages through ``current()`` until cancelled."""
        task_status.started()
        while True:
            await anyio.sleep(self._tick)
            due = self._due()
            if not due:
                continue
            client = await ready_client(current, self._tick)
            for run_id, run in due:
                try:
                    await self._show(client, run)
                except (discord.HTTPException, discord.ClientException) as exc:
                    logger.warning("discord: progress of %s not shown: %s", run.process, exc)
                    continue
                if run.ended or run.progress.fraction >= 1.0:
                    del self._runs[run_id]  # finished: its message says so

    def _due(self) -> list[tuple[str, _Run]]:
        now = self._clock()
        due = [
            (run_id, run)
            for run_id, run in self._runs.items()
            if run.dirty
            and (run.ended or run.progress.fraction >= 1.0 or now - run.shown_at >= self._edit)
        ]
        return due[:REQUESTS_PER_TICK]

    async def _show(self, client: discord.Client, run: _Run) -> None:
        text = progress_text(run.process, run.progress, run.ended)
        channel = await channel_of(client, self.channel_id)
        run.dirty = False  # a change while the request is under way makes it dirty again
        try:
            if run.message_id is None:
                message = await channel.send(text, allowed_mentions=NO_MENTIONS)
                run.message_id = message.id
            else:
                partial = channel.get_partial_message(run.message_id)  # type: ignore[attr-defined]
                await partial.edit(content=text)
        except BaseException:
            run.dirty = True
            raise
        run.shown_at = self._clock()
